"""Training-time photo datasets: augmentation and the torch Dataset over labelled photos."""

from __future__ import annotations

import logging
import math
import random

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from phpq.eval.datasets import Photo
from phpq.imaging import RESIZE_RATIO, Preprocessing, load_image, preprocess, to_network_input

log = logging.getLogger(__name__)


def random_resized_crop(
    image: Image.Image,
    size: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Image.Image:
    """Random area/aspect crop resized to ``size`` (the Inception-style augmentation)."""
    width, height = image.size
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))


def augment(image: Image.Image, size: int, rng: random.Random) -> np.ndarray:
    """Training view: random resized crop and horizontal flip, then the shared network scaling."""
    view = random_resized_crop(image, size, rng)
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return to_network_input(view)


class PhotoDataset(Dataset):
    """Photos -> (network input, label). ``view`` 0 is the test-time centre crop; others are augmented.

    Augmented views are seeded by (seed, index, view), so a cache of views is reproducible.
    """

    def __init__(
        self,
        photos: list[Photo],
        size: int,
        train: bool = False,
        seed: int = 0,
        view: int = 0,
        resize_ratio: float = RESIZE_RATIO,
    ):
        self.photos = photos
        self.size = size
        self.train = train
        self.seed = seed
        self.view = view
        self.resize_ratio = resize_ratio  # the test-time view's short side, as a multiple of size

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        photo = self.photos[index]
        image = load_image(photo.path, min_side=round(self.size * self.resize_ratio))
        if self.train or self.view > 0:
            # Cached views are reproducible per (seed, index, view); live training draws from torch's
            # generator, which DataLoader seeds per worker.
            key = f"{self.seed}:{index}:{self.view}" if not self.train else int(torch.randint(2**62, (1,)))
            rng = random.Random(key)
            array = augment(image, self.size, rng)
        else:
            array = preprocess(image, Preprocessing(self.size, self.resize_ratio))
        return torch.from_numpy(array), photo.label
