"""The one media walker: sorted, by suffix, hidden files and folders skipped."""

from facetrust.media.walk import expand_inputs, walk_media


def test_walk_skips_hidden_and_other_files(tmp_path):
    for rel in [
        "b.jpg",
        "a.PNG",
        "clip.mp4",
        "notes.txt",
        ".hidden.jpg",
        ".cache/x.jpg",
        "d/c.webp",
    ]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in walk_media(tmp_path)]
    assert got == ["a.PNG", "b.jpg", "clip.mp4", "d/c.webp"]
    images = [p.name for p in walk_media(tmp_path, {".jpg", ".png", ".webp"})]
    assert images == ["a.PNG", "b.jpg", "c.webp"]
    # a file named directly is kept whatever its name; folders are walked
    named = tmp_path / "notes.txt"
    assert list(expand_inputs([named, tmp_path / "d"])) == [named, tmp_path / "d" / "c.webp"]
