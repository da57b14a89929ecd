"""The public surface: one hop from ``facetrust``, cheap to import, extras reported in one line."""

import subprocess
import sys

import pytest

import facetrust


def test_public_names_resolve_and_are_listed():
    for name in facetrust.__all__:
        assert getattr(facetrust, name) is not None, name
    listed = set(dir(facetrust))
    for name in ("Detector", "Explainer", "Protector", "Trainer", "prepare", "evaluate", "fuse"):
        assert name in listed and name in facetrust.__all__
    for name in ("tune", "list_models", "create_model", "load_checkpoint", "InputError"):
        assert name in listed
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        facetrust.nope  # noqa: B018


def test_importing_facetrust_loads_no_torch():
    code = "import sys, facetrust; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_list_models_describes_the_shipped_models():
    models = {m.name: m for m in facetrust.list_models()}
    assert {"facetrust-default", "facetrust-fast"} <= set(models)
    default = models["facetrust-default"]
    assert default.experts == ["cnn", "clip", "frequency"] and default.crop_size == 256
    assert 0.9 < default.val_auc < 1 and 0 < default.threshold < 1 and default.size_mb < 25
    assert models["facetrust-fast"].experts == ["cnn"]


def test_a_missing_extra_is_one_line_with_its_command(monkeypatch):
    from facetrust import extras
    from facetrust.errors import MissingExtraError

    monkeypatch.setattr(extras, "EXTRAS", {**extras.EXTRAS, "train": ("no_such_module_x",)})
    with pytest.raises(MissingExtraError) as e:
        extras.require("train")
    msg = str(e.value)
    assert "\n" not in msg and "pip install 'facetrust[train]'" in msg and "no_such_module_x" in msg
    extras.require("serve")  # installed here: no error
