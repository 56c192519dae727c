"""A small-birds copy of a photo set: each photo pasted small into a larger frame of blurred background,
as a field photo shows a bird (the dev sets are bird-centred; the kept-back field photos are not)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from phpq.imaging import is_image_path

log = logging.getLogger(__name__)

FRAME_ASPECT = 4 / 3  # width / height of the frame
FEATHER = 16  # pixels over which a pasted photo's edge fades into the frame
BACKGROUND_BLUR = 3.0  # Gaussian radius, in pixels of the frame


def feathered_mask(width: int, height: int, feather: int = FEATHER) -> Image.Image:
    """An alpha mask that is opaque inside and fades linearly to 0 over ``feather`` pixels at the edges."""
    to_edge_y = np.minimum(np.arange(height), np.arange(height)[::-1])
    to_edge_x = np.minimum(np.arange(width), np.arange(width)[::-1])
    alpha = np.minimum(np.clip(to_edge_y / feather, 0, 1)[:, None], np.clip(to_edge_x / feather, 0, 1)[None, :])
    return Image.fromarray((alpha * 255).astype(np.uint8))


def small_bird_frame(photo: Image.Image, background: Image.Image, share: float, rng: random.Random) -> Image.Image:
    """``photo`` pasted at ``share`` of the frame's height into a 4:3 frame made of a side strip (a quarter
    of the width, left or right) of ``background``, stretched and blurred; its centre at a random spot of the
    middle 40 % of the frame in each direction."""
    height = round(photo.height / share)
    width = round(height * FRAME_ASPECT)
    quarter = background.width // 4
    if rng.random() < 0.5:
        strip = background.crop((0, 0, quarter, background.height))
    else:
        strip = background.crop((background.width * 3 // 4, 0, background.width, background.height))
    frame = strip.resize((width, height), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(BACKGROUND_BLUR))
    centre_x, centre_y = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    corner = (round(centre_x - photo.width / 2), round(centre_y - photo.height / 2))
    frame.paste(photo, corner, feathered_mask(photo.width, photo.height))
    return frame


def write_small_birds(source: Path, backgrounds: Path, output: Path, share: float = 0.35, seed: int = 0) -> int:
    """Write the small-birds copy of ``source`` (one folder per species) under ``output``, same folders and
    file stems, as JPEG; the backgrounds come from the photos under ``backgrounds`` (their side strips,
    drawn at random with ``seed``). Returns the number of photos written. ``source`` is only read."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    background_paths = sorted(p for p in backgrounds.rglob("*") if is_image_path(p))
    if not background_paths:
        raise ValueError(f"no photos under {backgrounds} to make backgrounds from")
    rng = random.Random(seed)
    written = 0
    for species in sorted(p for p in source.iterdir() if p.is_dir()):
        (output / species.name).mkdir(parents=True, exist_ok=True)
        for path in sorted(p for p in species.iterdir() if is_image_path(p)):
            with Image.open(path) as image:
                photo = image.convert("RGB")
            with Image.open(rng.choice(background_paths)) as image:
                background = image.convert("RGB")
            small_bird_frame(photo, background, share, rng).save(output / species.name / f"{path.stem}.jpg", quality=92)
            written += 1
    log.info("wrote %d small-bird photos under %s", written, output)
    return written
