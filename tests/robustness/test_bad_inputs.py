"""A corpus of bad and odd inputs: nothing crashes, every reason is recorded and shown, every other photo
is indexed. Plus random bytes fed to the image loader (hypothesis)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from phpq.cli import main as phpq
from phpq.db import PhotoSize
from phpq.imaging import Preprocessing, decode_for_network, load_and_preprocess
from phpq.index import IndexProgress
from phpq.library import Library
from tests.conftest import synthetic_photo, write_image_folder

GOOD_PER_CLASS = 3


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels and holds none (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def write_corpus(root: Path) -> tuple[dict[Path, str], dict[Path, str], list[Path]]:
    """(files expected to be unreadable -> why, odd files expected to index -> what, other entries)."""
    bad = root / "bad"
    odd = root / "odd"
    bad.mkdir(parents=True)
    odd.mkdir(parents=True)
    photo = synthetic_photo(0, 1, 120)
    good_jpeg = jpeg_bytes(photo, quality=90)
    png = io.BytesIO()
    photo.save(png, "PNG")
    rng = np.random.default_rng(7)
    expected_bad = {
        bad / "zero-bytes.jpg": "empty file",
        bad / "truncated.jpg": "JPEG cut after its header",
        bad / "truncated.png": "PNG cut in half",
        bad / "text.jpg": "text named .jpg",
        bad / "random.png": "random bytes named .png",
        bad / "bomb.png": "decompression bomb: 100000 x 100000 declared",
        bad / "symlink-to-nowhere.jpg": "broken symlink",
        bad / "loop-a.jpg": "symlink loop",
        bad / "loop-b.jpg": "symlink loop",
    }
    (bad / "zero-bytes.jpg").write_bytes(b"")
    (bad / "truncated.jpg").write_bytes(good_jpeg[:400])
    (bad / "truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 2])
    (bad / "text.jpg").write_text("just some notes, not a photo\n" * 20)
    (bad / "random.png").write_bytes(rng.bytes(5000))
    (bad / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (bad / "symlink-to-nowhere.jpg").symlink_to(bad / "missing.jpg")
    (bad / "loop-a.jpg").symlink_to(bad / "loop-b.jpg")
    (bad / "loop-b.jpg").symlink_to(bad / "loop-a.jpg")
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root reads everything, so this case needs a user
        locked = bad / "no-permission.jpg"
        locked.write_bytes(good_jpeg)
        locked.chmod(0)
        expected_bad[locked] = "no read permission"

    expected_odd = {}

    def add(name: str, what: str, image: Image.Image | None = None, data: bytes | None = None, **options) -> None:
        path = odd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if data is not None:
            path.write_bytes(data)
        else:
            image.save(path, **options)
        expected_odd[path] = what

    add("one-pixel.png", "1 x 1 image", Image.new("RGB", (1, 1), (200, 30, 30)))
    add("strip-1x10000.png", "1 x 10000 image", Image.new("RGB", (1, 10000), (30, 200, 30)))
    add("strip-10000x1.png", "10000 x 1 image", Image.new("L", (10000, 1), 128))
    add("cmyk.jpg", "CMYK JPEG", photo.convert("CMYK"), quality=90)
    sixteen = (np.asarray(photo.convert("L"), np.uint16) * 257).astype(np.uint16)
    add("gray16.png", "16-bit grayscale PNG", Image.fromarray(sixteen))
    add("palette.png", "palette PNG", photo.convert("P", palette=Image.Palette.ADAPTIVE))
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    add("alpha.png", "PNG with alpha", rgba)
    frames = [synthetic_photo(label, 2, 80).convert("P") for label in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("animated.gif", "animated GIF", data=buffer.getvalue())
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        add(f"orientation-{orientation}.jpg", f"EXIF orientation {orientation}", photo.crop((0, 0, 120, 80)), exif=exif)
    add("garbage-exif.jpg", "garbage EXIF block", photo, exif=b"Exif\x00\x00" + rng.bytes(300))
    add("bad-orientation.jpg", "EXIF orientation 42", photo, exif=_exif_with(0x0112, 42))
    add("飞鸟 🐦 Übersicht.png", "unicode and emoji name", photo)
    deep = Path(*[f"folder-{'x' * 40}-{level}" for level in range(12)])
    add(str(deep / ("long-name-" + "y" * 180 + ".jpg")), "path over 700 characters", photo, quality=90)
    add("webp.webp", "WebP", photo)
    add("tiff.tiff", "TIFF", photo)
    add("bmp.bmp", "BMP", photo)

    others = []
    fifo = bad / "pipe.jpg"
    if hasattr(os, "mkfifo"):
        os.mkfifo(fifo)  # a special file with a photo name: skipped, and never opened (it would block)
        others.append(fifo)
    (bad / "loop-dir").symlink_to(root, target_is_directory=True)  # a directory link back up: not followed
    others.append(bad / "loop-dir")
    (bad / "notes.txt").write_text("not a photo name: ignored")
    return expected_bad, expected_odd, others


def _exif_with(tag: int, value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[tag] = value
    return exif


@pytest.fixture
def library(tmp_path, tiny_model):
    with Library(tmp_path / "data" / "index.sqlite3", prefer_cuda=False) as opened:
        opened.activate_model(opened.import_model(tiny_model).id)
        yield opened


def test_every_bad_input_is_recorded_and_every_other_photo_indexed(library, tmp_path, tally, capsys):
    root = tmp_path / "photos"
    write_image_folder(root / "good", n_classes=4, per_class=GOOD_PER_CLASS)
    expected_bad, expected_odd, others = write_corpus(root)
    tally["bad_inputs"] += len(expected_bad) + len(expected_odd) + len(others)
    library.add_folder(root)
    report = library.index()
    errors = dict(library.unreadable())
    assert set(errors) == set(expected_bad), {str(p): r for p, r in errors.items()}
    for path, reason in errors.items():
        assert reason and "Traceback" not in reason, (path, reason)
    assert "too large" in errors[root / "bad" / "bomb.png"]
    assert "broken link" in errors[root / "bad" / "symlink-to-nowhere.jpg"]
    n_good = 4 * GOOD_PER_CLASS + len(expected_odd)
    assert report.encoded == n_good and report.failed + report.unreadable == len(expected_bad)
    counts = library.counts()
    n_bad = len(expected_bad)
    assert counts == {"images": n_good + n_bad, "errors": n_bad, "indexed": n_good, "pending": 0}
    # orientation 5-8 swap width and height in what is recorded (and shown in the window's tooltips)
    for orientation in range(1, 9):
        path = root / "odd" / f"orientation-{orientation}.jpg"
        record = library.db.image_by_path(path, library.active_model_id)
        assert record is not None and record.has_code
        pixels = (80, 120) if orientation >= 5 else (120, 80)
        assert library.photo_sizes([record.id]) == {record.id: PhotoSize(*pixels, path.stat().st_size)}
    # shown: `phpq status` lists them with their reasons (this second instance opens read-only)
    capsys.readouterr()
    assert phpq(["--db", str(library.db.path), "--cpu", "status"]) == 0
    shown = capsys.readouterr().out
    assert f"{len(expected_bad)} unreadable" in shown and "bomb.png: image too large" in shown
    # a second run retries only what might have become readable and changes nothing else
    again = library.index()
    assert again.encoded == 0 and library.counts() == counts


def test_odd_pixel_formats_decode_to_the_same_picture(tmp_path):
    photo = synthetic_photo(2, 4, 96)
    gray = np.asarray(photo.convert("L"), np.float32)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    rgba = photo.convert("RGBA")
    rgba.putalpha(255)
    rgba.save(tmp_path / "opaque-alpha.png")
    reference = load_and_preprocess(tmp_path / "gray16.png", Preprocessing(64))
    photo.convert("L").convert("RGB").save(tmp_path / "gray8.png")
    np.testing.assert_allclose(reference, load_and_preprocess(tmp_path / "gray8.png", Preprocessing(64)), atol=2 / 128)
    photo.save(tmp_path / "plain.png")
    np.testing.assert_allclose(
        load_and_preprocess(tmp_path / "opaque-alpha.png", Preprocessing(64)),
        load_and_preprocess(tmp_path / "plain.png", Preprocessing(64)),
    )


def test_recorded_sizes_follow_exif_orientation(tmp_path):
    photo = synthetic_photo(0, 3, 120).crop((0, 0, 120, 80))
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.jpg"
        photo.save(path, exif=_exif_with(0x0112, orientation))
        decoded = decode_for_network(path, Preprocessing(64))
        assert decoded.array.shape == (3, 64, 64) and np.isfinite(decoded.array).all()
        assert decoded.full_size == ((80, 120) if orientation >= 5 else (120, 80))


def test_files_changing_and_folders_vanishing_during_indexing(library, tmp_path, tally):
    root = write_image_folder(tmp_path / "photos", n_classes=4, per_class=10)
    doomed_folder = root / "004.class_3"
    deleted = root / "003.class_2" / "photo_009.jpg"
    rewritten = root / "003.class_2" / "photo_008.jpg"
    library.add_folder(root)
    done = []

    def meddle(state: IndexProgress) -> None:
        if state.phase == "encoding" and not done:
            done.append(True)
            deleted.unlink()
            rewritten.write_bytes(b"half-written garbage")
            for path in doomed_folder.iterdir():
                path.unlink()
            doomed_folder.rmdir()

    report = library.index(progress=meddle, batch_size=4)
    tally["bad_inputs"] += 3
    assert done and report.encoded + report.failed == 40
    errors = dict(library.unreadable())
    assert deleted in errors or rewritten in errors or any(path.parent == doomed_folder for path in errors)
    follow_up = library.index()  # the next run settles everything
    assert follow_up.removed == 11 and library.counts()["images"] == 29
    assert dict(library.unreadable()) == {rewritten: dict(library.unreadable())[rewritten]}
    assert library.counts()["indexed"] == 28


JPEG_PREFIX = jpeg_bytes(synthetic_photo(1, 1, 64), quality=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), keep=st.integers(min_value=0, max_value=len(JPEG_PREFIX)))
def test_the_image_loader_survives_random_bytes(tmp_path, tally, data, keep):
    """Random bytes, alone or after a valid JPEG's first ``keep`` bytes: a clean array or an exception."""
    tally["bad_inputs"] += 1
    path = tmp_path / "random.jpg"
    path.write_bytes(JPEG_PREFIX[:keep] + data)
    try:
        array = load_and_preprocess(path, Preprocessing(64))
    except Exception:  # any exception is a clean refusal; only crashes and hangs fail
        return
    assert array.shape == (3, 64, 64) and array.dtype == np.float32 and np.isfinite(array).all()
