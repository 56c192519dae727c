"""Zooming in on a small bird: a photo whose bird fills little of the frame is encoded again from a square
crop around it, cut from the photo at the resolution the crop needs.

The bird is found as SCDA does (Wei et al., 2017): the model's ``attention`` output is the channel mean of its
last activation map; the largest 4-connected region of cells above the map's mean is the bird. When that
region's longer side is at most ``max_side`` of the encoded square, the crop is ``margin`` times that side
around the region's centre (kept inside the photo) and goes through the model's own preprocessing. The
setting lives in the model's metadata (``zoom``, chosen on the dev protocols: docs/results.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from phpq.imaging import Preprocessing, preprocess

log = logging.getLogger(__name__)

COMBINES = ("replace", "average")
# The photo with its short side at least this many pixels (or at full size when it is smaller).
PhotoSource = Callable[[int], Image.Image]


@dataclass(frozen=True)
class Region:
    """A square around the bird, in fractions of the encoded square's side: centre and side."""

    centre_x: float
    centre_y: float
    side: float


@dataclass(frozen=True)
class Zoom:
    """When to zoom (the bird's longer side at most ``max_side`` of the encoded square), how far (the
    crop's side ``margin`` times the bird's) and what the photo's encoding becomes: the crop's
    (``"replace"``) or the mean of the whole photo's and the crop's (``"average"``, two scales)."""

    max_side: float
    margin: float
    combine: str = "average"

    def __post_init__(self) -> None:
        if not 0.0 < self.max_side <= 1.0 or self.margin < 1.0 or self.combine not in COMBINES:
            raise ValueError(
                f"zoom: max_side in (0, 1], margin >= 1 and combine one of {COMBINES},"
                f" got {self.max_side}, {self.margin}, {self.combine!r}"
            )

    @classmethod
    def from_json(cls, text: str) -> Zoom | None:
        """``{"max_side": s, "margin": m, "combine": c}`` as exported; ``{}`` (or nothing) means no zooming."""
        values = json.loads(text or "{}")
        if not values:
            return None
        try:
            return cls(float(values["max_side"]), float(values["margin"]), str(values.get("combine", "average")))
        except (KeyError, TypeError) as error:
            raise ValueError(f"zoom must have max_side and margin, got {text}") from error

    def region(self, attention: np.ndarray) -> Region | None:
        """The square to encode again for one photo's attention map [g, g], or None to keep the photo whole."""
        cells = bird_cells(attention)
        if cells is None:
            return None
        rows, columns = cells
        grid = attention.shape[0]
        side = max(rows.stop - rows.start, columns.stop - columns.start) / grid
        if side > self.max_side:
            return None
        centre_x, centre_y = (columns.start + columns.stop) / 2 / grid, (rows.start + rows.stop) / 2 / grid
        return Region(centre_x, centre_y, side * self.margin)


def bird_cells(attention: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns spanned by the largest 4-connected region of cells above the map's mean (the first
    found among equals), or None when no cell is above it (a flat map)."""
    mask = attention > attention.mean()
    seen = np.zeros_like(mask)
    best: list[tuple[int, int]] = []
    height, width = mask.shape
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        stack, region = [start], []
        while stack:
            y, x = stack.pop()
            region.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        if len(region) > len(best):
            best = region
    if not best:
        return None
    ys, xs = zip(*best, strict=True)
    return slice(min(ys), max(ys) + 1), slice(min(xs), max(xs) + 1)


def encoded_square(width: int, height: int, spec: Preprocessing) -> float:
    """The side, in the photo's pixels, of the centred square that ``preprocess`` encodes (a very elongated
    photo is first cut to its central square, which changes nothing here)."""
    return spec.input_size * min(width, height) / spec.resize_side


def crop_box(size: tuple[int, int], region: Region, spec: Preprocessing) -> tuple[int, int, int, int]:
    """The region as a square box (left, top, right, bottom) of a photo of ``size`` (width, height), moved
    inside the photo and at most its short side."""
    width, height = size
    square = encoded_square(width, height, spec)
    side = min(region.side * square, width, height)
    centre_x = width / 2 + (region.centre_x - 0.5) * square
    centre_y = height / 2 + (region.centre_y - 0.5) * square
    left = min(max(centre_x - side / 2, 0.0), width - side)
    top = min(max(centre_y - side / 2, 0.0), height - side)
    return round(left), round(top), round(left + side), round(top + side)


def zoomed_input(source: PhotoSource, full_size: tuple[int, int], region: Region, spec: Preprocessing) -> np.ndarray:
    """The network input of the region of a photo of ``full_size``, decoded so that the crop keeps at least
    the pixels the network's short side needs."""
    square = encoded_square(*full_size, spec)
    fraction = region.side * square / min(full_size)  # of the short side
    image = source(int(np.ceil(spec.resize_side / max(fraction, 1e-6))))
    # The photo may come decoded smaller than full size (a JPEG's reduced-scale decode): scale the box.
    scale = image.width / full_size[0]
    left, top, right, bottom = crop_box(full_size, region, spec)
    box = (round(left * scale), round(top * scale), max(round(right * scale), 1), max(round(bottom * scale), 1))
    return preprocess(image.crop(box), spec)


def zoom_regions(zoom: Zoom | None, attention: np.ndarray | None) -> list[Region | None]:
    """Per photo of a batch, the region to encode again (None: keep the whole photo's encoding)."""
    if zoom is None or attention is None:
        return [None] * (0 if attention is None else len(attention))
    return [zoom.region(map_) for map_ in attention]


def zoomed_inputs(
    regions: Sequence[Region | None],
    sources: Sequence[PhotoSource],
    full_sizes: Sequence[tuple[int, int]],
    spec: Preprocessing,
) -> dict[int, np.ndarray]:
    """The network inputs of the photos to encode again, by position in the batch. A photo that cannot be
    decoded again (moved or changed since) keeps its whole-frame encoding."""
    inputs = {}
    for index, region in enumerate(regions):
        if region is None:
            continue
        try:
            inputs[index] = zoomed_input(sources[index], full_sizes[index], region, spec)
        except Exception as error:  # any decoding failure: the photo keeps its first encoding
            log.warning("cannot zoom in on photo %d of the batch: %s", index, error)
    return inputs
