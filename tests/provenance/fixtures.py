"""Files that carry provenance, made here from the project's example photo (nothing downloaded):
generator text chunks, XMP digital source type, the Stable Diffusion watermark, C2PA
credentials signed with a throw-away certificate chain. Shared by the tests and
benchmarks/provenance.py."""

from __future__ import annotations

import datetime
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "astronaut.jpg"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"

A1111_PARAMETERS = (
    "portrait photo of an astronaut, studio light, 85mm, sharp focus, detailed skin\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567, Size: 512x512, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.6.0"
)
COMFY_PROMPT = {
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"},
    },
    "6": {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "a photo of an astronaut", "clip": ["4", 1]},
    },
    "3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20, "model": ["4", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI"}},
}
COMFY_WORKFLOW = {
    "last_node_id": 9,
    "nodes": [{"id": 3, "type": "KSampler"}, {"id": 9, "type": "SaveImage"}],
}


def example_rgb() -> np.ndarray:
    """The project's example photo (512x512 RGB)."""
    with Image.open(EXAMPLE) as im:
        return np.asarray(im.convert("RGB"))


def png_bytes(rgb: np.ndarray, texts: dict[str, str] | None = None) -> bytes:
    info = PngInfo()
    for k, v in (texts or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def a1111_png(rgb: np.ndarray) -> bytes:
    return png_bytes(rgb, {"parameters": A1111_PARAMETERS})


def comfy_png(rgb: np.ndarray) -> bytes:
    return png_bytes(
        rgb, {"prompt": json.dumps(COMFY_PROMPT), "workflow": json.dumps(COMFY_WORKFLOW)}
    )


def xmp_packet(source_type: str = "trainedAlgorithmicMedia", creator_tool: str = "") -> str:
    tool = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" '
        'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        f'xmlns:xmp="http://ns.adobe.com/xap/1.0/"{tool} '
        f'Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"/>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )


def with_app1(jpeg: bytes, payload: bytes) -> bytes:
    """``jpeg`` with an APP1 segment carrying ``payload`` right after SOI."""
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + seg + jpeg[2:]


def xmp_jpeg(rgb: np.ndarray, source_type: str = "trainedAlgorithmicMedia") -> bytes:
    header = b"http://ns.adobe.com/xap/1.0/\x00"
    return with_app1(jpeg_bytes(rgb), header + xmp_packet(source_type).encode("utf-8"))


def software_jpeg(rgb: np.ndarray, software: str) -> bytes:
    exif = Image.Exif()
    exif[0x0131] = software
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


SD_V1 = b"StableDiffusionV1"


def watermarked_rgb(rgb: np.ndarray, payload: bytes = SD_V1) -> np.ndarray:
    """``rgb`` watermarked as the SD 1.x ``txt2img.py`` does: invisible-watermark's encoder on
    BGR pixels, method dwtDct."""
    from imwatermark import WatermarkEncoder

    enc = WatermarkEncoder()
    enc.set_watermark("bytes", payload)
    bgr = enc.encode(np.ascontiguousarray(rgb[:, :, ::-1]), "dwtDct")
    return np.ascontiguousarray(bgr[:, :, ::-1])


# ---- C2PA ------------------------------------------------------------------------------------


def cert_chain() -> tuple[str, str, str]:
    """A throw-away ES256 chain: (signer cert + CA cert PEM, signer key PEM, CA cert PEM).

    c2pa-rs wants a CA-issued end-entity certificate (not self-signed) with digitalSignature
    key usage, an email-protection EKU, and subject/authority key identifiers."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facetrust tests"),
            ]
        )

    def usage(sign: bool, ca: bool) -> x509.KeyUsage:
        return x509.KeyUsage(sign, False, False, False, False, ca, ca, False, False)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("facetrust test root"))
        .issuer_name(name("facetrust test root"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage(False, True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    ee = (
        x509.CertificateBuilder()
        .subject_name(name("facetrust test signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(True, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def pem(c: x509.Certificate) -> str:
        return c.public_bytes(serialization.Encoding.PEM).decode()

    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return pem(ee) + pem(ca), key_pem, pem(ca)


def c2pa_signed(
    asset: bytes,
    chain: tuple[str, str, str],
    mime: str = "image/jpeg",
    source_type: str = "trainedAlgorithmicMedia",
) -> bytes:
    """``asset`` with embedded C2PA credentials: a c2pa.created action of ``source_type``."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "facetrust-test-generator", "version": "1.0"}],
        "title": "generated.jpg",
        "format": mime,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC + source_type,
                            "softwareAgent": {"name": "TestDiffusion 2"},
                        }
                    ]
                },
            }
        ],
    }
    certs, key, _ = chain
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs.encode(), key.encode(), None)
    out = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(json.dumps(manifest)) as b:
        b.sign(signer, mime, io.BytesIO(asset), out)
    return out.getvalue()


def c2pa_remote(asset: bytes, chain: tuple[str, str, str], url: str) -> bytes:
    """``asset`` signed with its manifest kept remote: only an XMP ``dcterms:provenance``
    pointing to ``url`` is embedded."""
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": "facetrust-test-generator", "version": "1.0"}],
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC + "trainedAlgorithmicMedia",
                        }
                    ]
                },
            }
        ],
    }
    certs, key, _ = chain
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, certs.encode(), key.encode(), None)
    out = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(json.dumps(manifest)) as b:
        b.set_no_embed()
        b.set_remote_url(url)
        b.sign(signer, "image/jpeg", io.BytesIO(asset), out)
    return out.getvalue()


def jpeg_segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment before the scan data."""
    out, pos = [], 2
    while pos + 4 <= len(jpeg) and jpeg[pos] == 0xFF:
        marker = jpeg[pos + 1]
        if marker == 0xDA:
            break
        (length,) = struct.unpack(">H", jpeg[pos + 2 : pos + 4])
        out.append((marker, pos, pos + 2 + length))
        pos += 2 + length
    return out


def strip_app11(jpeg: bytes) -> bytes:
    """``jpeg`` without its APP11 (JUMBF, C2PA) segments; pixels untouched."""
    cut = [(s, e) for m, s, e in jpeg_segments(jpeg) if m == 0xEB]
    out, pos = bytearray(), 0
    for s, e in cut:
        out += jpeg[pos:s]
        pos = e
    return bytes(out + jpeg[pos:])


def flip_byte(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def scan_byte(jpeg: bytes) -> int:
    """An index inside the compressed scan data (the pixels), far from the markers."""
    sos = jpeg_segments(jpeg)[-1][2]
    return sos + (len(jpeg) - sos) // 2


def manifest_byte(jpeg: bytes) -> int:
    """An index inside the claim signature region of the first APP11 segment."""
    segs = [(s, e) for m, s, e in jpeg_segments(jpeg) if m == 0xEB]
    s, e = segs[-1]
    return e - 64


def truncated_jumbf(jpeg: bytes) -> bytes:
    """The signed JPEG with its first APP11 segment cut short (its JUMBF boxes claim more bytes
    than remain) and the segment length fixed so the JPEG itself still parses."""
    m, s, e = next(seg for seg in jpeg_segments(jpeg) if seg[0] == 0xEB)
    keep = min(200, e - s - 4)
    body = jpeg[s + 4 : s + 4 + keep]
    seg = b"\xff\xeb" + struct.pack(">H", len(body) + 2) + body
    rest = strip_app11(jpeg[:s] + jpeg[e:])
    return rest[:2] + seg + rest[2:]


def mp4_bytes(comment: str | None = None) -> bytes:
    """A three-frame 64x64 MP4, with a container ``comment`` tag if given."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        if comment:
            c.metadata["comment"] = comment
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 40, np.uint8), "rgb24")
            for packet in s.encode(frame):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return buf.getvalue()


def huge_text_png(rgb: np.ndarray, size: int = 10 * 1024 * 1024) -> bytes:
    return png_bytes(rgb, {"parameters": "A" * size})


def ztxt_bomb_png(rgb: np.ndarray, inflated: int = 64 * 1024 * 1024) -> bytes:
    """A PNG whose zTXt chunk inflates to ``inflated`` bytes (a few dozen KiB stored)."""
    png = png_bytes(rgb)
    body = b"parameters\x00\x00" + zlib.compress(b"\x00" * inflated, 9)
    chunk = struct.pack(">I", len(body)) + b"zTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"zTXt" + body) & 0xFFFFFFFF)
    return png[:33] + chunk + png[33:]  # after the signature and IHDR
