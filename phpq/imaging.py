"""Photo decoding and the one preprocessing function shared by training, export checks and the app."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)

try:  # HEIC/HEIF photos (iPhones) decode through pillow-heif when it is installed
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a dependency, but the rest works without it
    log.debug("pillow-heif not installed: HEIC/HEIF photos cannot be decoded")

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif"})
# EfficientNet-Lite was trained on (pixel - 127) / 128, not on ImageNet mean/std.
PIXEL_OFFSET = 127.0
PIXEL_SCALE = 128.0
# Test-time geometry: resize the short side to RESIZE_RATIO * crop size, then centre crop.
RESIZE_RATIO = 256 / 224
# Images more elongated than this are cut to their central square before resizing (see preprocess).
MAX_ASPECT = 4.0


@dataclass(frozen=True)
class Preprocessing:
    """How a network wants its pixels: short side resized to ``resize_ratio * input_size``, centre crop
    ``input_size``, then ``(pixel - pixel_offset) / pixel_scale``. An exported model carries its own values
    in its metadata (``phpq.model.ModelInfo.preprocessing``); the defaults are EfficientNet-Lite's."""

    input_size: int
    resize_ratio: float = RESIZE_RATIO
    pixel_offset: float = PIXEL_OFFSET
    pixel_scale: float = PIXEL_SCALE

    def __post_init__(self) -> None:
        if self.input_size < 1 or self.resize_ratio < 1.0 or self.pixel_scale <= 0.0:
            raise ValueError(
                f"input_size {self.input_size} (>= 1), resize_ratio {self.resize_ratio} (>= 1),"
                f" pixel_scale {self.pixel_scale} (> 0)"
            )

    @property
    def resize_side(self) -> int:
        """The short side before the centre crop."""
        return round(self.input_size * self.resize_ratio)


def is_image_name(name: str) -> bool:
    """True when a file name has a photo suffix we decode (a string test, cheap on large folders)."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in IMAGE_SUFFIXES


def is_image_path(path: Path) -> bool:
    """True when the file name has a photo suffix we decode."""
    return is_image_name(path.name)


_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that shows the photo upright (2 to 8; 1 and anything else: as stored).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations 5 to 8 turn the photo by 90 degrees, so width and height swap.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent, unreadable or out of range)."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # damaged EXIF blocks raise many types; the photo is still shown as stored
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION_TRANSPOSE else 1


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: 16-bit and float images are scaled, transparency goes on white."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float32)
        peak = float(array.max()) if array.size else 0.0
        if image.mode.startswith("I;16") or 255.0 < peak <= 65535.0:
            scale = 255.0 / 65535.0  # 16-bit samples
        else:
            scale = 255.0 / peak if peak > 65535.0 else 1.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image_with_size(path: Path, min_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode a photo to RGB with EXIF orientation applied; also return its full (width, height) as shown.

    With ``min_side`` a JPEG is decoded by libjpeg at the smallest 1/2, 1/4 or 1/8 scale whose short
    side stays at least ``min_side`` pixels (Pillow ``draft``), which is much faster for camera photos.
    Animated images give their first frame. Pillow's decompression-bomb limit stays in force.
    """
    with Image.open(path) as image:
        width, height = image.size
        orientation = exif_orientation(image)
        if orientation in _TRANSPOSING_ORIENTATIONS:
            width, height = height, width
        if min_side is not None and image.format == "JPEG":
            scale = min_side / max(1, min(image.size))
            image.draft("RGB", (max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        rgb = to_rgb(image)
    if orientation != 1:
        rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    return rgb, (width, height)


def load_image(path: Path, min_side: int | None = None) -> Image.Image:
    """Decode a photo to RGB with EXIF orientation applied (see ``load_image_with_size``)."""
    return load_image_with_size(path, min_side)[0]


def resize_short_side(image: Image.Image, short_side: int) -> Image.Image:
    """Resize so that the shorter side is ``short_side`` pixels, keeping the aspect ratio."""
    width, height = image.size
    scale = short_side / min(width, height)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """Crop the central ``size`` x ``size`` square."""
    return center_crop_box(image, size, size)


def center_crop_box(image: Image.Image, crop_width: int, crop_height: int) -> Image.Image:
    """Crop the central ``crop_width`` x ``crop_height`` box."""
    width, height = image.size
    left = (width - crop_width) // 2
    top = (height - crop_height) // 2
    return image.crop((left, top, left + crop_width, top + crop_height))


def to_network_input(image: Image.Image, offset: float = PIXEL_OFFSET, scale: float = PIXEL_SCALE) -> np.ndarray:
    """RGB image of the network's size -> float32 array [3, H, W] scaled as (pixel - offset) / scale."""
    array = np.asarray(image, dtype=np.float32)
    return np.ascontiguousarray(((array - offset) / scale).transpose(2, 0, 1))


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """Test-time preprocessing: resize the short side, centre crop, scale the pixels (``spec``).

    A very elongated image (a 1 x 10000 strip) is first cut to its central square, which holds the
    whole centre crop anyway, so that resizing its short side cannot blow up its long side.
    """
    width, height = image.size
    if max(width, height) > MAX_ASPECT * min(width, height):
        side = min(width, height)
        image = center_crop_box(image, side, side)
    resized = resize_short_side(image, spec.resize_side)
    return to_network_input(center_crop(resized, spec.input_size), spec.pixel_offset, spec.pixel_scale)


@dataclass(frozen=True)
class DecodedPhoto:
    """A photo decoded for the network: its input, its full (width, height) as shown, and the image it was
    made from (a JPEG's reduced-scale decode), kept so that a zoom (``phpq.zoom``) need not decode again."""

    array: np.ndarray
    full_size: tuple[int, int]
    image: Image.Image


def decode_for_network(path: Path, spec: Preprocessing) -> DecodedPhoto:
    """Decode ``path`` (reduced-scale JPEG decode where enough) and preprocess it for the network."""
    image, full_size = load_image_with_size(path, min_side=spec.resize_side)
    return DecodedPhoto(preprocess(image, spec), full_size, image)


def load_and_preprocess(path: Path, spec: Preprocessing) -> np.ndarray:
    """Decode ``path`` (reduced-scale JPEG decode where enough) and preprocess it for the network."""
    return decode_for_network(path, spec).array
