"""Photo datasets: ImageFolder and official CUB_200_2011 layouts, evaluation protocols, augmentation."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from app.imaging import RESIZE_RATIO, is_image_path, load_image, preprocess, to_network_input

log = logging.getLogger(__name__)

PROTOCOLS = ("val", "unseen", "all")
QUERY_EVERY = 5


@dataclass(frozen=True)
class Photo:
    path: Path
    label: int


@dataclass
class PhotoSet:
    """Photos with integer labels and the class names they index."""

    photos: list[Photo]
    class_names: list[str]

    @property
    def labels(self) -> np.ndarray:
        return np.array([photo.label for photo in self.photos], dtype=np.int64)


def scan_image_folder(root: Path) -> PhotoSet:
    """One sub-directory per class (sorted by name); files directly inside the root are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {root}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root} has no class sub-directories (expected one folder per class)")
    photos = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(
            p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_path(p)
        )
        photos.extend(Photo(path, label) for path in files)
    return PhotoSet(photos, [d.name for d in class_dirs])


def load_cub_official(root: Path, split: str = "train") -> PhotoSet:
    """The official CUB_200_2011 layout (images.txt, image_class_labels.txt, train_test_split.txt)."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    def table(name: str) -> dict[str, str]:
        lines = (root / name).read_text().split("\n")
        return dict(line.split(" ", 1) for line in lines if line.strip())

    images, labels, is_train = table("images.txt"), table("image_class_labels.txt"), table("train_test_split.txt")
    class_names = [name for _, name in sorted(table("classes.txt").items(), key=lambda kv: int(kv[0]))]
    wanted = "1" if split == "train" else "0"
    photos = [
        Photo(root / "images" / images[i], int(labels[i]) - 1) for i in sorted(images, key=int) if is_train[i] == wanted
    ]
    return PhotoSet(photos, class_names)


def load_photo_set(root: Path, split: str = "train") -> PhotoSet:
    """Detect the layout: official CUB_200_2011 when images.txt is present, else ImageFolder."""
    root = Path(root)
    if (root / "images.txt").is_file():
        return load_cub_official(root, split)
    return scan_image_folder(root)


@dataclass
class ProtocolSplit:
    """Training photos and the query/database sets of one evaluation protocol."""

    train: list[Photo]
    query: list[Photo]
    database: list[Photo]
    train_classes: int


def split_protocol(photo_set: PhotoSet, protocol: str) -> ProtocolSplit:
    """Deterministic protocols carved from one labelled photo set (photos sorted by path in each class).

    - ``val``: in every class, photos 0, 5, 10, ... are queries; the rest are the database and the
      training set (trained classes, unseen photos).
    - ``unseen``: the first half of the classes (sorted by name) is the training set; among the other
      half, photos 0, 5, 10, ... are queries and the rest the database (species never trained on).
    - ``all``: every photo trains; queries/database as in ``val`` (monitoring only, not a measurement).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    by_class: dict[int, list[Photo]] = {}
    for photo in photo_set.photos:
        by_class.setdefault(photo.label, []).append(photo)
    query, database = [], []
    n_classes = len(photo_set.class_names)
    held_out_from = n_classes // 2 if protocol == "unseen" else 0
    for label in sorted(by_class):
        if label < held_out_from:
            continue
        for index, photo in enumerate(sorted(by_class[label], key=lambda p: p.path)):
            (query if index % QUERY_EVERY == 0 else database).append(photo)
    if protocol == "unseen":
        train = [p for p in photo_set.photos if p.label < held_out_from]
        return ProtocolSplit(train, query, database, held_out_from)
    train = list(photo_set.photos) if protocol == "all" else list(database)
    return ProtocolSplit(train, query, database, n_classes)


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

    def __init__(self, photos: list[Photo], size: int, train: bool = False, seed: int = 0, view: int = 0):
        self.photos = photos
        self.size = size
        self.train = train
        self.seed = seed
        self.view = view

    def __len__(self) -> int:
        return len(self.photos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        photo = self.photos[index]
        image = load_image(photo.path, min_side=round(self.size * RESIZE_RATIO))
        if self.train or self.view > 0:
            # Cached views are reproducible per (seed, index, view); live training draws from torch's
            # generator, which DataLoader seeds per worker.
            key = f"{self.seed}:{index}:{self.view}" if not self.train else int(torch.randint(2**62, (1,)))
            rng = random.Random(key)
            array = augment(image, self.size, rng)
        else:
            array = preprocess(image, self.size)
        return torch.from_numpy(array), photo.label
