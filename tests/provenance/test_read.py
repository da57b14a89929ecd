"""read_provenance on files made by the tests: each evidence kind, its strength, its limits."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from facetrust.errors import MediaError
from facetrust.provenance import ProvenanceLimits, file_verdict, read_provenance
from facetrust.provenance.watermark import PAYLOADS, decode_bits

from . import fixtures as F


def only(prov, kind):
    items = [e for e in prov.evidence if e.kind == kind]
    assert len(items) == 1, prov.evidence
    return items[0]


# ---- metadata --------------------------------------------------------------------------------


def test_a1111_parameters_chunk(rgb):
    prov = read_provenance(F.a1111_png(rgb))
    e = only(prov, "metadata")
    assert (e.generative, e.strength) == (True, "metadata")
    assert "AUTOMATIC1111" in e.claim and e.source == "PNG text chunk 'parameters'"
    assert e.raw["prompt"].startswith("portrait photo of an astronaut")
    assert e.raw["negative_prompt"] == "blurry, lowres"
    assert (e.raw["steps"], e.raw["seed"], e.raw["model"]) == (
        "30",
        "1234567",
        "v1-5-pruned-emaonly",
    )
    assert file_verdict("real", prov).verdict == "ai_indicated"


def test_long_prompt_is_shortened(rgb):
    long = "word " * 5000 + "\nSteps: 20, Sampler: Euler a, Seed: 1"
    prov = read_provenance(
        F.png_bytes(rgb, {"parameters": long}), limits=ProvenanceLimits(prompt_chars=50)
    )
    prompt = only(prov, "metadata").raw["prompt"]
    assert len(prompt) == 50 and prompt.endswith("…")


def test_parameters_chunk_without_generator_settings_is_not_evidence(rgb):
    prov = read_provenance(F.png_bytes(rgb, {"parameters": "exposure=1/250"}))
    assert prov.evidence == []


def test_comfyui_prompt_and_workflow(rgb):
    e = only(read_provenance(F.comfy_png(rgb)), "metadata")
    assert e.generative and "ComfyUI" in e.claim
    assert e.raw["models"] == ["sd_xl_base_1.0.safetensors"]
    assert e.raw["prompt"] == "a photo of an astronaut"
    assert "KSampler" in e.raw["node_types"]


def test_novelai_chunks(rgb):
    comment = '{"prompt": "1girl, astronaut", "steps": 28, "seed": 7}'
    png = F.png_bytes(
        rgb, {"Software": "NovelAI", "Source": "NovelAI Diffusion V3", "Comment": comment}
    )
    e = only(read_provenance(png), "metadata")
    assert e.claim == "made with NovelAI" and e.raw["prompt"] == "1girl, astronaut"


@pytest.mark.parametrize(
    ("code", "generative"),
    [
        ("trainedAlgorithmicMedia", True),
        ("compositeWithTrainedAlgorithmicMedia", True),
        ("digitalCapture", False),
    ],
)
def test_xmp_digital_source_type(rgb, code, generative):
    prov = read_provenance(F.xmp_jpeg(rgb, code))
    e = only(prov, "metadata")
    assert e.generative is generative and e.source == "XMP Iptc4xmpExt:DigitalSourceType"
    assert e.raw["digital_source_type"].endswith(code)
    # a camera claim never turns a pixel "fake" into "real"
    assert file_verdict("fake", prov).verdict == ("ai_indicated" if generative else "fake")


def test_exif_software_names_editor_or_generator(rgb):
    e = only(read_provenance(F.software_jpeg(rgb, "Adobe Photoshop 25.0 (Windows)")), "metadata")
    assert (e.claim, e.generative) == ("edited with Adobe Photoshop", False)
    prov = read_provenance(F.software_jpeg(rgb, "Midjourney v6"))
    assert only(prov, "metadata").generative
    assert prov.fields["Software"] == "Midjourney v6"
    assert read_provenance(F.software_jpeg(rgb, "Camera firmware 1.2")).evidence == []


def test_a1111_parameters_in_jpeg_user_comment(rgb):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + F.A1111_PARAMETERS.encode("utf-16-be")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", exif=exif.tobytes())
    e = only(read_provenance(buf.getvalue()), "metadata")
    assert e.source == "EXIF UserComment" and e.raw["sampler"] == "DPM++ 2M Karras"


# ---- watermark -------------------------------------------------------------------------------


def test_decoder_is_bit_exact_with_invisible_watermark(rgb, watermarked):
    from imwatermark import WatermarkDecoder

    noise = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    for img in (rgb, watermarked, noise):
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        for p in PAYLOADS:
            ref = WatermarkDecoder("bits", len(p.bits)).decode(bgr, "dwtDct")
            assert np.array_equal(decode_bits(bgr, len(p.bits)), np.asarray(ref, dtype=np.uint8))


def test_sd_watermark_found_in_png(watermarked):
    e = only(read_provenance(F.png_bytes(watermarked)), "watermark")
    assert (e.strength, e.generative) == ("embedded", True)
    assert e.raw == {
        "payload": "StableDiffusionV1",
        "bits": 136,
        "bit_agreement": 1.0,
        "channel_order": "BGR",
        "method": "dwtDct",
    }


def test_sdxl_watermark_in_diffusers_channel_order(rgb):
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bits", list(PAYLOADS[2].bits))
    marked = enc.encode(np.ascontiguousarray(rgb), "dwtDct")  # diffusers passes RGB as is
    e = only(read_provenance(F.png_bytes(marked)), "watermark")
    assert (e.raw["payload"], e.raw["channel_order"]) == ("SDXL", "RGB")


def test_no_watermark_in_the_plain_photo(rgb):
    prov = read_provenance(F.png_bytes(rgb))
    assert prov.evidence == [] and "watermark" in prov.checked


def test_what_the_watermark_survives(watermarked):
    """Measured: the payload sits in the U chroma channel, so 4:4:4 JPEG at 90 keeps it, the
    usual 4:2:0 chroma subsampling (Pillow's default) erases it, and so does a 50 % resize."""

    def jpeg(subsampling):
        buf = io.BytesIO()
        Image.fromarray(watermarked).save(buf, "JPEG", quality=90, subsampling=subsampling)
        return buf.getvalue()

    assert only(read_provenance(jpeg(0)), "watermark").raw["bit_agreement"] >= 0.9
    sub = read_provenance(jpeg(2))  # 4:2:0: not decoded, and rightly so
    assert sub.evidence == [] and "watermark" in sub.not_applicable
    from facetrust.provenance.watermark import payload_agreement

    pixels = np.asarray(Image.open(io.BytesIO(jpeg(2))).convert("RGB"))
    assert max(a for a, _ in payload_agreement(pixels).values()) < 0.9
    half = np.asarray(Image.fromarray(watermarked).resize((256, 256), Image.BICUBIC))
    prov = read_provenance(F.png_bytes(half))
    assert prov.evidence == [] and "watermark" in prov.checked


def test_decoded_pixels_can_be_passed_in(watermarked):
    prov = read_provenance(F.png_bytes(watermarked), image=watermarked)
    assert only(prov, "watermark").raw["payload"] == "StableDiffusionV1"
    assert read_provenance(F.png_bytes(watermarked), watermark=False).evidence == []


# ---- C2PA ------------------------------------------------------------------------------------


def test_c2pa_signed_with_a_throwaway_cert_is_untrusted(signed_jpeg):
    prov = read_provenance(signed_jpeg)
    e = only(prov, "c2pa")
    assert e.strength == "signed-untrusted"
    assert (e.claim, e.generative) == ("created by a generative model", True)
    assert e.raw["signer"] == "facetrust test signer"
    assert e.raw["claim_generator"] == "facetrust-test-generator 1.0"
    assert e.raw["actions"][0]["action"] == "c2pa.created"
    assert e.raw["actions"][0]["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    assert "signingCredential.untrusted" in e.raw["validation_failures"]
    assert "claimSignature.validated" in e.raw["validation_codes"]
    v = file_verdict("real", prov)
    assert v.verdict == "ai_indicated" and "unverified" in v.reason


def test_c2pa_trusted_when_its_root_is_a_trust_anchor(signed_jpeg, chain):
    prov = read_provenance(signed_jpeg, trust_anchors=chain[2])
    assert only(prov, "c2pa").strength == "signed-valid"
    assert file_verdict("real", prov).verdict == "ai_declared"
    other_root = F.cert_chain()[2]
    assert only(read_provenance(signed_jpeg, trust_anchors=other_root), "c2pa").strength != (
        "signed-valid"
    )


@pytest.mark.parametrize("where", ["pixels", "manifest"])
def test_c2pa_one_byte_changed_is_invalid(signed_jpeg, chain, where):
    index = F.scan_byte(signed_jpeg) if where == "pixels" else F.manifest_byte(signed_jpeg)
    prov = read_provenance(F.flip_byte(signed_jpeg, index), trust_anchors=chain[2])
    e = only(prov, "c2pa")
    assert e.strength == "signed-invalid"
    # invalid credentials never decide the verdict: the pixel label stands
    assert file_verdict("real", prov).verdict == "real"


def test_c2pa_stripped_manifest_leaves_no_evidence(signed_jpeg):
    prov = read_provenance(F.strip_app11(signed_jpeg))
    assert prov.evidence == [] and "c2pa" in prov.checked
    assert file_verdict("real", prov).verdict == "real"


def test_remote_manifest_url_is_never_fetched(rgb, chain):
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/manifest.c2pa"
        prov = read_provenance(F.c2pa_remote(F.jpeg_bytes(rgb), chain, url))
    finally:
        srv.shutdown()
        srv.server_close()
    assert hits == []
    e = only(prov, "c2pa")
    assert (e.strength, e.raw["url"], e.generative) == ("metadata", url, False)
    assert any("remote and was not fetched" in n for n in prov.notes)


# ---- hostile input ---------------------------------------------------------------------------


def test_truncated_jumbf_is_a_note(signed_jpeg):
    prov = read_provenance(F.truncated_jumbf(signed_jpeg))
    e = only(prov, "c2pa")
    assert e.strength == "signed-invalid" and "unreadable" in e.claim
    assert any(n.startswith("c2pa: the manifest store cannot be read") for n in prov.notes)


def test_truncated_file_is_notes_not_a_crash(signed_jpeg):
    prov = read_provenance(signed_jpeg[: len(signed_jpeg) // 3])
    assert prov.notes and all(isinstance(n, str) for n in prov.notes)


def test_ten_megabyte_text_chunk_is_skipped(rgb):
    t = time.perf_counter()
    prov = read_provenance(F.huge_text_png(rgb))
    assert time.perf_counter() - t < 5
    assert prov.evidence == []
    assert (
        "metadata: PNG text chunk 'parameters' is 10.0 MiB; skipped (limit 256 KiB)" in prov.notes
    )


def test_compressed_text_bomb_is_skipped(rgb):
    prov = read_provenance(F.ztxt_bomb_png(rgb))
    assert any("inflates past 256 KiB" in n for n in prov.notes)


def test_tiny_image_watermark_is_a_note(rgb):
    prov = read_provenance(F.png_bytes(rgb[:8, :8]))
    assert "watermark" not in prov.checked
    assert any(n.startswith("watermark: the image is 8x8") for n in prov.notes)


def test_truncated_png_chunk_and_bad_exif_are_notes(rgb):
    png = F.a1111_png(rgb)
    cut = png[: png.index(b"tEXt") + 20]
    prov = read_provenance(cut)
    assert any("truncated" in n for n in prov.notes)
    bad_exif = F.with_app1(F.jpeg_bytes(rgb), b"Exif\x00\x00II*\x00\xff\xff\xff\x7f garbage")
    assert isinstance(read_provenance(bad_exif).notes, list)


def test_not_media_is_an_error(tmp_path):
    with pytest.raises(MediaError, match="not a supported image or video"):
        read_provenance(b"hello world")
    with pytest.raises(MediaError, match="empty"):
        read_provenance(b"")
    with pytest.raises(MediaError, match="not found"):
        read_provenance(tmp_path / "missing.png")


# ---- video -----------------------------------------------------------------------------------


def test_video_container_tags(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(F.mp4_bytes(comment="generated with OpenAI Sora"))
    prov = read_provenance(path)
    assert (prov.media, prov.not_applicable) == ("video", ["watermark"])
    e = only(prov, "metadata")
    assert e.generative and e.source == "video container tag 'comment'"


def test_video_c2pa(chain):
    signed = F.c2pa_signed(F.mp4_bytes(), chain, mime="video/mp4")
    assert only(read_provenance(signed), "c2pa").strength == "signed-untrusted"
    assert only(read_provenance(signed, trust_anchors=chain[2]), "c2pa").strength == "signed-valid"
    assert read_provenance(F.mp4_bytes()).evidence == []


# ---- the verdict rule ------------------------------------------------------------------------


def test_verdict_without_evidence_is_the_pixel_label():
    from facetrust.provenance import Provenance

    for label in ("real", "fake", "no_face"):
        assert file_verdict(label, Provenance()).verdict == label
    assert file_verdict(None, None).verdict == "unknown"
