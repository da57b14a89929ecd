"""Generator and editor clues in plain metadata: IPTC digital source type (XMP), the PNG text
chunks of generator front-ends, EXIF/XMP software fields. All of it is unsigned: any tool can
write, copy or strip it, so every item here has strength ``metadata``."""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

from facetrust.provenance.containers import Blocks
from facetrust.provenance.types import Evidence, ProvenanceLimits, shorten

__all__ = [
    "DIGITAL_SOURCE_TYPES",
    "GENERATIVE_SOURCE_TYPES",
    "interpret_blocks",
    "source_type_claim",
    "tool_claim",
]

IPTC_DST = "http://cv.iptc.org/newscodes/digitalsourcetype/"

#: IPTC digital source types (the code after ``.../digitalsourcetype/``) and what they claim.
DIGITAL_SOURCE_TYPES: dict[str, str] = {
    "trainedAlgorithmicMedia": "created by a generative model",
    "compositeWithTrainedAlgorithmicMedia": "composite that includes generative-model content",
    "algorithmicMedia": "created by an algorithm (no trained model)",
    "compositeSynthetic": "composite of synthetic elements",
    "algorithmicallyEnhanced": "enhanced by an algorithm",
    "digitalCapture": "captured by a digital camera",
    "computationalCapture": "captured with computational photography",
    "negativeFilm": "scanned from negative film",
    "positiveFilm": "scanned from positive film",
    "print": "scanned from a print",
    "minorHumanEdits": "captured, with minor human edits",
    "humanEdits": "edited by a person",
    "compositeCapture": "composite of captured elements",
    "composite": "composite",
    "digitalCreation": "created digitally by a person",
    "dataDrivenMedia": "data-driven media",
    "screenCapture": "screen capture",
    "virtualRecording": "virtual recording",
    "digitalArt": "digital art",
}
#: The source types that say a trained (generative) model made or contributed the content.
GENERATIVE_SOURCE_TYPES = frozenset(
    {"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"}
)

# (name shown, pattern) of generative tools and of editors, matched in software-like fields.
_GENERATORS: tuple[tuple[str, str], ...] = (
    ("AUTOMATIC1111", r"automatic1111|stable-diffusion-webui"),
    ("Stable Diffusion", r"stable[\s_-]?diffusion|\bsdxl\b"),
    ("ComfyUI", r"comfy\s?ui"),
    ("NovelAI", r"novel\s?ai"),
    ("InvokeAI", r"invoke\s?ai"),
    ("Fooocus", r"fooocus"),
    ("Midjourney", r"midjourney"),
    ("DALL-E", r"dall[\s\-·]?e\b"),
    ("Adobe Firefly", r"firefly"),
    ("Google Imagen", r"\bimagen\b"),
    ("FLUX", r"\bflux\.1\b|black forest labs"),
    ("Leonardo.Ai", r"leonardo\.?ai"),
    ("Ideogram", r"ideogram"),
    ("DiffusionBee", r"diffusion\s?bee"),
    ("Draw Things", r"draw things"),
    ("NightCafe", r"nightcafe"),
    ("Craiyon", r"craiyon"),
    ("Bing Image Creator", r"bing image creator"),
    ("Microsoft Designer", r"microsoft designer"),
    ("OpenAI", r"\bopenai\b|chatgpt|gpt-4o|gpt-image"),
    ("DreamStudio", r"dreamstudio|stability\.?ai"),
    ("FaceApp", r"\bfaceapp\b"),
    ("Remini", r"\bremini\b"),
)
_EDITORS: tuple[tuple[str, str], ...] = (
    ("Adobe Photoshop", r"photoshop"),
    ("Adobe Lightroom", r"lightroom"),
    ("GIMP", r"\bgimp\b"),
    ("Affinity Photo", r"affinity"),
    ("Pixelmator", r"pixelmator"),
    ("Snapseed", r"snapseed"),
    ("Canva", r"\bcanva\b"),
    ("Paint.NET", r"paint\.net"),
    ("Krita", r"\bkrita\b"),
    ("Facetune", r"facetune"),
    ("Picsart", r"picsart"),
    ("Luminar", r"luminar"),
    ("Capture One", r"capture one"),
    ("darktable", r"darktable"),
    ("RawTherapee", r"rawtherapee"),
)
_GEN_RE = [(name, re.compile(p, re.IGNORECASE)) for name, p in _GENERATORS]
_EDIT_RE = [(name, re.compile(p, re.IGNORECASE)) for name, p in _EDITORS]

# EXIF tags kept as descriptive fields (0th IFD), and the Exif IFD's UserComment.
_EXIF_FIELDS = {
    0x0131: "Software",
    0x010F: "Make",
    0x0110: "Model",
    0x013B: "Artist",
    0x013C: "HostComputer",
    0x010E: "ImageDescription",
}
_SOFTWARE_FIELDS = ("Software", "HostComputer", "XMP CreatorTool", "XMP softwareAgent")

# XMP: attribute (a:Name="v") and element (<a:Name>v</a:Name>) forms, namespaces ignored.
_XMP_NAMES = "DigitalSourceType|CreatorTool|softwareAgent|provenance"
_XMP_ATTR = re.compile(rf'(?:\w+:)?({_XMP_NAMES})\s*=\s*"([^"]{{0,2048}})"')
_XMP_ELEM = re.compile(rf"<(?:\w+:)?({_XMP_NAMES})>\s*([^<]{{0,2048}}?)\s*</")
_A1111_TAIL = re.compile(r"(?:^|\n)Steps: \d+")
_A1111_PAIR = re.compile(r"\s*([A-Za-z][\w ]{0,40}):\s*(\"[^\"]*\"|[^,]*)(?:,|$)")


def tool_claim(value: str) -> tuple[str, str, bool] | None:
    """(tool name, claim, generative) when a software-like value names a known generator or
    editor, else None."""
    for name, rx in _GEN_RE:
        if rx.search(value):
            face_app = name in ("FaceApp", "Remini")
            claim = f"edited with an AI face app ({name})" if face_app else f"made with {name}"
            return name, claim, True
    for name, rx in _EDIT_RE:
        if rx.search(value):
            return name, f"edited with {name}", False
    return None


def source_type_claim(uri_or_code: str) -> tuple[str, str, bool]:
    """(code, claim, generative) for an IPTC digital source type URI or bare code."""
    code = uri_or_code.strip().rsplit("/", 1)[-1]
    claim = DIGITAL_SOURCE_TYPES.get(code, f"digital source type '{shorten(code, 60)}'")
    return code, claim, code in GENERATIVE_SOURCE_TYPES


def interpret_blocks(
    blocks: Blocks, limits: ProvenanceLimits
) -> tuple[list[Evidence], dict[str, str], list[str]]:
    """Evidence items, descriptive fields and notes from the raw blocks of one file."""
    ev: list[Evidence] = []
    fields: dict[str, str] = {}
    notes = list(blocks.notes)
    user_comments: list[str] = []
    for raw in blocks.exif:
        _exif(raw, fields, user_comments, notes)
    for packet in blocks.xmp:
        _xmp(packet, ev, fields)
    ev.extend(_front_ends(blocks.texts, user_comments, limits, notes))
    for key, value in blocks.texts:
        if key in ("Software", "Source") and key not in fields:
            fields[f"PNG {key}"] = shorten(value, 120)
    for c in blocks.comments:
        fields.setdefault("Comment", shorten(c, 120))
    for field_name, value in list(fields.items()):
        if field_name in _SOFTWARE_FIELDS or field_name in ("PNG Software", "PNG Source"):
            hit = tool_claim(value)
            if hit and not _already(ev, hit[0]):
                ev.append(
                    Evidence(
                        kind="metadata",
                        claim=hit[1],
                        generative=hit[2],
                        source=f"{field_name} field",
                        strength="metadata",
                        raw={"field": field_name, "value": value},
                    )
                )
    return ev, fields, notes


def _already(ev: list[Evidence], tool: str) -> bool:
    return any(tool in e.claim or tool in e.source for e in ev)


# ---- EXIF ------------------------------------------------------------------------------------


def _exif(raw: bytes, fields: dict[str, str], comments: list[str], notes: list[str]) -> None:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = Image.Exif()
            exif.load(raw if raw.startswith(b"Exif") else b"Exif\x00\x00" + raw)
            for tag, name in _EXIF_FIELDS.items():
                value = exif.get(tag)
                if isinstance(value, bytes):
                    value = value.decode("utf-8", errors="replace")
                if isinstance(value, str) and value.strip("\x00 "):
                    fields.setdefault(name, shorten(value.strip("\x00 "), 120))
            comment = exif.get_ifd(0x8769).get(0x9286)
    except Exception as e:  # noqa: BLE001 - Pillow's EXIF parser raises many types on bad data
        notes.append(f"metadata: EXIF block is malformed ({shorten(str(e), 120)})")
        return
    text = _user_comment(comment)
    if text:
        comments.append(text)


def _user_comment(value: object) -> str | None:
    """EXIF UserComment: an 8-byte charset code then the text (AUTOMATIC1111 writes UNICODE)."""
    if isinstance(value, str):
        return value.strip("\x00 ") or None
    if not isinstance(value, bytes) or len(value) <= 8:
        return None
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        # big-endian per the standard; little-endian writers leave the high (zero) byte second
        le = body[1::2].count(0) > body[0::2].count(0)
        text = body.decode("utf-16-le" if le else "utf-16-be", errors="replace")
    else:
        text = body.decode(
            "utf-8" if code.startswith(b"ASCII") or not code.strip(b"\x00") else "latin-1",
            errors="replace",
        )
    return text.strip("\x00 ") or None


# ---- XMP -------------------------------------------------------------------------------------


def _xmp(packet: str, ev: list[Evidence], fields: dict[str, str]) -> None:
    seen: set[str] = set()
    for name, value in [*_XMP_ATTR.findall(packet), *_XMP_ELEM.findall(packet)]:
        value = value.strip()
        if not value:
            continue
        if name == "DigitalSourceType":
            code, claim, generative = source_type_claim(value)
            if code in seen:
                continue
            seen.add(code)
            ev.append(
                Evidence(
                    kind="metadata",
                    claim=claim,
                    generative=generative,
                    source="XMP Iptc4xmpExt:DigitalSourceType",
                    strength="metadata",
                    raw={"digital_source_type": shorten(value, 200)},
                )
            )
        elif name == "provenance":  # dcterms:provenance: a remote C2PA manifest's URL
            if "remote" in seen:
                continue
            seen.add("remote")
            ev.append(
                Evidence(
                    kind="c2pa",
                    claim="points to remote content credentials (not fetched, not verified)",
                    generative=False,
                    source="XMP dcterms:provenance",
                    strength="metadata",
                    raw={"url": shorten(value, 300)},
                )
            )
        else:
            fields.setdefault(f"XMP {name}", shorten(value, 120))


# ---- generator front-ends (PNG text chunks, EXIF UserComment) --------------------------------


def _front_ends(
    texts: list[tuple[str, str]],
    user_comments: list[str],
    limits: ProvenanceLimits,
    notes: list[str],
) -> list[Evidence]:
    ev: list[Evidence] = []
    by_key: dict[str, str] = {}
    for k, v in texts:
        by_key.setdefault(k, v)
    n = limits.prompt_chars

    params = by_key.get("parameters")
    if params is not None and _A1111_TAIL.search(params):
        ev.append(_a1111(params, "PNG text chunk 'parameters'", n))
    for c in user_comments:
        if _A1111_TAIL.search(c):
            ev.append(_a1111(c, "EXIF UserComment", n))
            break

    comfy = {k: by_key[k] for k in ("prompt", "workflow") if k in by_key}
    if comfy:
        raw = _comfy(comfy, n, notes)
        if raw is not None:
            ev.append(
                Evidence(
                    kind="metadata",
                    claim="made with ComfyUI (its node graph is in the file)",
                    generative=True,
                    source="PNG text chunks " + ", ".join(f"'{k}'" for k in comfy),
                    strength="metadata",
                    raw=raw,
                )
            )

    software = by_key.get("Software", "")
    if "novelai" in software.lower() or (
        "Comment" in by_key and "NovelAI" in by_key.get("Source", "")
    ):
        raw: dict[str, Any] = {"software": shorten(software, 80)}
        if "Source" in by_key:
            raw["model"] = shorten(by_key["Source"], 80)
        comment = _json(by_key.get("Comment", ""), "PNG text chunk 'Comment'", notes)
        if isinstance(comment, dict):
            if isinstance(comment.get("prompt"), str):
                raw["prompt"] = shorten(comment["prompt"], n)
            for k in ("steps", "sampler", "seed", "scale"):
                if isinstance(comment.get(k), str | int | float):
                    raw[k] = comment[k]
        elif "Description" in by_key:
            raw["prompt"] = shorten(by_key["Description"], n)
        ev.append(
            Evidence(
                kind="metadata",
                claim="made with NovelAI",
                generative=True,
                source="PNG text chunks 'Software', 'Comment'",
                strength="metadata",
                raw=raw,
            )
        )

    for key in ("invokeai_metadata", "sd-metadata", "Dream"):
        if key in by_key:
            ev.append(
                Evidence(
                    kind="metadata",
                    claim="made with InvokeAI",
                    generative=True,
                    source=f"PNG text chunk '{key}'",
                    strength="metadata",
                    raw={"text": shorten(by_key[key], n)},
                )
            )
            break
    return ev


def _a1111(text: str, source: str, n: int) -> Evidence:
    """AUTOMATIC1111-style parameters: prompt, 'Negative prompt: ...', then 'Steps: ..., ...'."""
    lines = text.strip().split("\n")
    settings_line = lines[-1] if lines else ""
    body = "\n".join(lines[:-1])
    prompt, _, negative = body.partition("\nNegative prompt:")
    if body.startswith("Negative prompt:"):
        prompt, negative = "", body[len("Negative prompt:") :]
    raw: dict[str, Any] = {"prompt": shorten(prompt, n)}
    if negative.strip():
        raw["negative_prompt"] = shorten(negative, n)
    pairs = dict(_A1111_PAIR.findall(settings_line[:4096]))
    for key in ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model", "Model hash", "Version"):
        if key in pairs:
            raw[key.lower().replace(" ", "_")] = shorten(pairs[key].strip('"'), 80)
    tool = "Stable Diffusion web UI (AUTOMATIC1111 or a fork)"
    return Evidence(
        kind="metadata",
        claim=f"made with {tool}",
        generative=True,
        source=source,
        strength="metadata",
        raw=raw,
    )


def _json(text: str, what: str, notes: list[str]) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        notes.append(f"metadata: {what} is not valid JSON")
        return None


def _comfy(chunks: dict[str, str], n: int, notes: list[str]) -> dict[str, Any] | None:
    """Node types, checkpoints and the first prompt text of a ComfyUI graph, or None if the
    chunks are not a ComfyUI graph."""
    raw: dict[str, Any] = {}
    graph = (
        _json(chunks["prompt"], "PNG text chunk 'prompt'", notes) if "prompt" in chunks else None
    )
    nodes: list[dict] = []
    if isinstance(graph, dict):
        nodes = [v for v in graph.values() if isinstance(v, dict) and "class_type" in v]
    workflow = (
        _json(chunks["workflow"], "PNG text chunk 'workflow'", notes)
        if "workflow" in chunks
        else None
    )
    wf_nodes = workflow.get("nodes") if isinstance(workflow, dict) else None
    if not nodes and not isinstance(wf_nodes, list):
        return None
    types = [str(v.get("class_type")) for v in nodes] or [
        str(v.get("type"))
        for v in wf_nodes
        if isinstance(v, dict)  # type: ignore[union-attr]
    ]
    raw["node_types"] = sorted(set(types))[:20]
    ckpts, prompts = [], []
    for v in nodes:
        inputs = v.get("inputs") if isinstance(v.get("inputs"), dict) else {}
        for k in ("ckpt_name", "unet_name", "model_name"):
            if isinstance(inputs.get(k), str):
                ckpts.append(shorten(inputs[k], 80))
        if "TextEncode" in str(v.get("class_type")) and isinstance(inputs.get("text"), str):
            prompts.append(inputs["text"])
    if ckpts:
        raw["models"] = sorted(set(ckpts))[:5]
    if prompts:
        raw["prompt"] = shorten(prompts[0], n)
    return raw
