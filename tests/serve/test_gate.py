"""The memory gate, the inference slots and the body timeout, on their own."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from facetrust.media.budget import DeadlineExceeded
from facetrust.serve.gate import InferenceSlots, MemoryGate, release_memory, upload_cost
from facetrust.serve.middleware import BodyLimitMiddleware, RequestContextMiddleware


def test_memory_gate_bounds_bytes_in_flight():
    gate = MemoryGate(100)
    inside: list[int] = []
    peak = 0
    lock = threading.Lock()

    def work(cost: int) -> None:
        nonlocal peak
        with gate.hold(cost) as charged:
            with lock:
                inside.append(charged)
                peak = max(peak, sum(inside))
            time.sleep(0.05)
            with lock:
                inside.remove(charged)

    threads = [threading.Thread(target=work, args=(c,)) for c in (60, 60, 30, 30, 500)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak <= 100  # 500 is capped at the capacity: it ran alone
    assert gate.in_use == 0 and gate.peak <= 100


def test_memory_gate_wait_is_bounded_by_the_deadline():
    gate = MemoryGate(100)
    with gate.hold(80):
        t0 = time.perf_counter()
        with pytest.raises(DeadlineExceeded), gate.hold(50, timeout=0.2):
            pass
        assert 0.15 < time.perf_counter() - t0 < 2.0
        with gate.hold(20, timeout=0.0):  # fits: no wait
            pass


def test_upload_cost_comes_from_the_header():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000)).save(buf, format="PNG")
    full = upload_cost(buf.getvalue(), None, 0, 50_000_000)
    reduced = upload_cost(buf.getvalue(), 1_000_000, 0, 50_000_000)
    assert full == 4000 * 3000 * 12 and reduced < full
    assert upload_cost(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, None, 2**27, 1) > 2**27
    assert isinstance(release_memory(), bool)


def test_inference_slots_share_and_exclude():
    slots = InferenceSlots(2)
    order: list[str] = []
    with slots.shared(), slots.shared():
        with pytest.raises(DeadlineExceeded), slots.shared(timeout=0.05):  # both taken
            pass

        def explain() -> None:
            with slots.exclusive(timeout=5):
                order.append("exclusive")

        t = threading.Thread(target=explain)
        t.start()
        time.sleep(0.1)
        assert order == []  # waits for the two detections
        order.append("shared done")
    t.join(5)
    assert order == ["shared done", "exclusive"]
    with slots, slots.shared(timeout=0):  # the plain context manager takes a shared slot
        pass


def test_stalled_body_is_a_408():
    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    wrapped = RequestContextMiddleware(BodyLimitMiddleware(app, max_bytes=10_000, timeout_s=0.2))
    sent: list[dict] = []
    first = True

    async def receive():
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"abc", "more_body": True}
        await asyncio.sleep(10)  # the client stopped sending
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/detect", "headers": []}
    t0 = time.perf_counter()
    asyncio.run(wrapped(scope, receive, send))
    assert time.perf_counter() - t0 < 2.0
    assert sent[0]["status"] == 408
    assert b"request body timed out" in sent[1]["body"]
