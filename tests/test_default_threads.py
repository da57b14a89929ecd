"""The default thread count: the cores this process may use, less those other work keeps busy."""

import os

import pytest

from facetrust.config import default_threads


@pytest.mark.parametrize(
    ("cores", "load", "expected"),
    [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 9.0, 1), (16, 3.2, 13), (16, 0.0, 16)],
)
def test_default_threads_leaves_busy_cores_alone(monkeypatch, cores, load, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert default_threads() == expected


def test_default_threads_without_a_load_average(monkeypatch):
    def no_load():
        raise OSError("no load average")

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(os, "getloadavg", no_load)
    assert default_threads() == 3
