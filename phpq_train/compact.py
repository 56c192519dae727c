"""A compact copy of a photo tree (smaller JPEG or WebP files, same folders) that is easy to move to a GPU machine."""

from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from phpq.imaging import is_image_path, load_image, resize_short_side

log = logging.getLogger(__name__)


FORMATS = {"jpeg": (".jpg", {"format": "JPEG", "optimize": True}), "webp": (".webp", {"format": "WEBP", "method": 6})}


def compact_copy(
    source: Path, destination: Path, short_side: int = 240, quality: int = 70, image_format: str = "jpeg"
) -> tuple[int, int]:
    """Re-encode every photo under ``source`` as a JPEG or WebP whose short side is at most ``short_side``.

    The folder structure and file stems are kept (suffix .jpg or .webp; WebP is about 30 % smaller at the
    same quality setting). Returns (photos written, bytes written).
    Photos that cannot be read are logged and skipped. The source is only read.
    """
    if image_format not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {image_format!r}")
    suffix, save_options = FORMATS[image_format]
    source, destination = Path(source), Path(destination)
    if destination.resolve().is_relative_to(source.resolve()):
        raise ValueError("the destination must not lie inside the source tree")
    photos = sorted(p for p in source.rglob("*") if p.is_file() and is_image_path(p) and not p.name.startswith("."))
    written = total = 0
    for path in tqdm(photos, desc="compacting", unit="photo"):
        target = destination / path.relative_to(source).with_suffix(suffix)
        try:
            image = load_image(path, min_side=short_side)
        except OSError as error:
            log.warning("skipped %s: %s", path, error)
            continue
        if min(image.size) > short_side:
            image = resize_short_side(image, short_side)
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=quality, **save_options)
        written += 1
        total += target.stat().st_size
    return written, total
