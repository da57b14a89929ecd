"""C2PA content credentials, read and validated by the ``c2pa-python`` package (c2pa-rs).

The manifest store's validation state decides the strength: ``Trusted`` (the signature
validates and the signer chains to a configured trust anchor) is ``signed-valid``; ``Valid``
(the signature validates, the signer is on no trust list) is ``signed-untrusted``; ``Invalid``
(a hash or signature does not match: the file or manifest changed after signing) is
``signed-invalid``. With no trust anchors configured, nothing can be ``signed-valid``.
"""

from __future__ import annotations

import io
import json
import threading
from typing import Any

from facetrust.provenance.metadata import source_type_claim
from facetrust.provenance.types import Evidence, shorten

__all__ = ["read_c2pa"]

_MARKERS = (b"jumb", b"c2pa")  # JUMBF box type and the C2PA manifest-store label
_contexts: dict[str, Any] = {}
_lock = threading.Lock()

_STATE_STRENGTH = {
    "Trusted": "signed-valid",
    "Valid": "signed-untrusted",
    "Invalid": "signed-invalid",
}
_FAILURE_PREFIXES = ("signingCredential.untrusted",)  # untrusted is not a failure of integrity


def _context(trust_anchors: str | None) -> Any:
    """A c2pa Context that never goes to the network (no remote manifest, no OCSP: a URL
    inside an uploaded file must not make the server fetch it) and trusts ``trust_anchors``
    (PEM) if given; shared per anchor set."""
    import c2pa

    key = trust_anchors or ""
    with _lock:
        ctx = _contexts.get(key)
        if ctx is None:
            settings: dict[str, Any] = {
                "verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}
            }
            if trust_anchors:
                settings["trust"] = {"trust_anchors": trust_anchors}
            ctx = c2pa.Context.from_dict(settings)
            _contexts[key] = ctx
        return ctx


def read_c2pa(
    data: bytes, mime: str | None, notes: list[str], trust_anchors: str | None = None
) -> list[Evidence]:
    """Evidence from the C2PA manifest store embedded in ``data`` (none when there is none)."""
    if not any(m in data for m in _MARKERS):
        return []  # no JUMBF box at all: nothing for c2pa-rs to find (checked byte-wise, ~0.1 ms)
    try:
        import c2pa
    except ImportError:
        notes.append("c2pa: the c2pa-python package is not installed; credentials not read")
        return []
    try:
        reader = c2pa.Reader.try_create(mime or "", io.BytesIO(data), None, _context(trust_anchors))
    except c2pa.C2paError as e:
        if str(e).startswith("Remote"):  # the XMP points to a remote manifest: never fetched
            notes.append(
                "c2pa: the manifest is remote and was not fetched (facetrust never fetches URLs "
                "found in files)"
            )
            return []
        return _unreadable(
            f"c2pa: the manifest store cannot be read ({shorten(str(e), 160)})", notes
        )
    except Exception as e:  # noqa: BLE001 - a native library error must stay a note
        return _unreadable(
            f"c2pa: reading failed ({type(e).__name__}: {shorten(str(e), 120)})", notes
        )
    if reader is None:
        return []
    try:
        with reader:
            store = json.loads(reader.json())
    except (c2pa.C2paError, ValueError, RecursionError) as e:
        return _unreadable(
            f"c2pa: the manifest store cannot be read ({shorten(str(e), 160)})", notes
        )
    return [_evidence(store)]


def _unreadable(note: str, notes: list[str]) -> list[Evidence]:
    notes.append(note)
    return [
        Evidence(
            kind="c2pa",
            claim="content credentials present but unreadable",
            generative=False,
            source="C2PA manifest store",
            strength="signed-invalid",
            raw={"error": note.removeprefix("c2pa: ")},
        )
    ]


def _codes(store: dict) -> tuple[list[str], list[str]]:
    """(failure codes, informational/success codes) of the active manifest."""
    failures: list[str] = []
    others: list[str] = []
    results = store.get("validation_results")
    if isinstance(results, dict) and isinstance(results.get("activeManifest"), dict):
        am = results["activeManifest"]
        failures += [str(s.get("code")) for s in am.get("failure") or [] if isinstance(s, dict)]
        others += [
            str(s.get("code"))
            for key in ("informational", "success")
            for s in am.get(key) or []
            if isinstance(s, dict)
        ]
    for s in store.get("validation_status") or []:
        if isinstance(s, dict) and str(s.get("code")) not in failures:
            failures.append(str(s.get("code")))
    return failures, sorted(set(others))


def _strength(store: dict, failures: list[str]) -> str:
    state = store.get("validation_state")
    if state in _STATE_STRENGTH:
        return _STATE_STRENGTH[state]
    integrity = [c for c in failures if not c.startswith(_FAILURE_PREFIXES)]
    if integrity:
        return "signed-invalid"
    return "signed-untrusted"  # never "signed-valid" without the library saying Trusted


def _actions(manifest: dict) -> list[dict]:
    acts: list[dict] = []
    for a in manifest.get("assertions") or []:
        if not isinstance(a, dict) or not str(a.get("label", "")).startswith("c2pa.actions"):
            continue
        data = a.get("data") if isinstance(a.get("data"), dict) else {}
        acts += [x for x in data.get("actions") or [] if isinstance(x, dict)]
    return acts


def _agent(action: dict) -> str | None:
    agent = action.get("softwareAgent")
    if isinstance(agent, dict):
        agent = agent.get("name")
    return shorten(agent, 80) if isinstance(agent, str) else None


def _generator(manifest: dict) -> str:
    info = manifest.get("claim_generator_info")
    if isinstance(info, list) and info and isinstance(info[0], dict):
        name = str(info[0].get("name", ""))
        version = info[0].get("version")
        return shorten(f"{name} {version}" if version else name, 80)
    return shorten(str(manifest.get("claim_generator", "unknown")), 80)


def _evidence(store: dict) -> Evidence:
    manifests = store.get("manifests") if isinstance(store.get("manifests"), dict) else {}
    label = store.get("active_manifest")
    active = manifests.get(label) if isinstance(label, str) else None
    failures, others = _codes(store)
    strength = _strength(store, failures)
    if not isinstance(active, dict):
        return Evidence(
            kind="c2pa",
            claim="content credentials present, with no active manifest",
            generative=False,
            source="C2PA manifest store",
            strength="signed-invalid" if strength != "signed-valid" else strength,
            raw={"validation_failures": failures[:20]},
        )
    sig = active.get("signature_info") if isinstance(active.get("signature_info"), dict) else {}
    signer = sig.get("common_name") or sig.get("issuer") or "unknown signer"
    actions = [
        {
            "action": shorten(str(a.get("action")), 60),
            **(
                {"digital_source_type": shorten(str(a["digitalSourceType"]), 120)}
                if a.get("digitalSourceType")
                else {}
            ),
            **({"software_agent": _agent(a)} if _agent(a) else {}),
        }
        for a in _actions(active)
    ]
    # the claim: a generative source type anywhere in the store (the active manifest or an
    # ingredient's) wins; then what the active manifest's first action says
    claim, generative = "content credentials present", False
    for m_label, m in manifests.items():
        if not isinstance(m, dict):
            continue
        for a in _actions(m):
            dst = a.get("digitalSourceType")
            if isinstance(dst, str) and dst:
                _, text, gen = source_type_claim(dst)
                if gen:
                    claim, generative = text, True
                    if m_label != label:
                        claim = f"an ingredient was {text}"
                    break
        if generative:
            break
    if not generative and actions:
        first = actions[0]
        if "digital_source_type" in first:
            claim = source_type_claim(first["digital_source_type"])[1]
        elif first["action"] != "c2pa.opened":
            claim = first["action"].removeprefix("c2pa.")
    ingredients = [
        {
            "title": shorten(str(i.get("title", "")), 80),
            "relationship": str(i.get("relationship", "")),
            **(
                {"manifest": shorten(str(i["active_manifest"]), 80)}
                if i.get("active_manifest")
                else {}
            ),
        }
        for i in active.get("ingredients") or []
        if isinstance(i, dict)
    ][:20]
    return Evidence(
        kind="c2pa",
        claim=claim,
        generative=generative,
        source=f"signer {shorten(str(signer), 80)} via {_generator(active)}",
        strength=strength,  # type: ignore[arg-type]
        raw={
            "claim_generator": _generator(active),
            "signer": shorten(str(signer), 80),
            "issuer": shorten(str(sig.get("issuer", "")), 80),
            "signature_alg": str(sig.get("alg", "")),
            "signed_at": str(sig.get("time", "")) or None,
            "validation_state": store.get("validation_state"),
            "validation_failures": failures[:20],
            "validation_codes": others[:20],
            "actions": actions[:20],
            "ingredients": ingredients,
            "manifests": len(manifests),
        },
    )
