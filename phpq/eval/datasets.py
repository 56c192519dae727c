"""Labelled photo sets (ImageFolder and official CUB_200_2011 layouts) and the evaluation protocols.

Torch-free, so ONNX-only evaluation (``phpq-eval --model``) and the app can use it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from phpq.imaging import is_image_path

PROTOCOLS = ("val", "fresh", "unseen", "other", "other-held", "all")
OTHER_PROTOCOLS = ("other", "other-held")  # another photo set, measured with a model trained elsewhere
MEASURED_PROTOCOLS = PROTOCOLS[:-1]  # "all" trains on everything and measures nothing
QUERY_EVERY = 5  # val: every 5th photo of a class is a query
FRESH_EVERY = 3  # fresh: every 3rd photo of a class is held out of training
EXTRA_SPECIES_EVERY = 2  # species 0, 2, 4, ... of another photo set may train; other-held measures the rest
EXTRA_SPECIES = ("even", "all")  # which species of another photo set train: that half, or every one


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
    held_out: bool = True  # False for "all": the queries were trained on, so no measurement is made
    leave_one_out: bool = False  # query and database are one gallery: each photo queries all the others


def split_protocol(photo_set: PhotoSet, protocol: str) -> ProtocolSplit:
    """Deterministic protocols carved from one labelled photo set (photos sorted by path in each class).

    - ``val`` (the hashing papers' protocol): in every class, photos 0, 5, 10, ... are queries; the
      rest are the database and the training set (trained species, database memorised in training).
    - ``fresh`` (trained species, photos never trained on, as in a user's own collection): in every
      class, photos 0, 3, 6, ... form the gallery and never train; the gallery is scored leave-one-out
      (each photo queries all the others); the other photos train.
    - ``unseen`` (species never trained on): the first half of the classes (sorted by name) trains;
      every photo of the other half is in the gallery, scored leave-one-out.
    - ``other`` (birds of another photo set, e.g. ``birds525-dev``, measured with a model trained
      elsewhere): nothing trains; every photo is in the gallery, scored leave-one-out.
    - ``other-held``: ``other`` on that set's species a model trained with its even species
      (``extra_training_species``) never saw: species 1, 3, 5, ... sorted by name.
    - ``all``: every photo trains; queries/database as in ``val`` (monitoring only, not a measurement).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    by_class: dict[int, list[Photo]] = {}
    for photo in photo_set.photos:
        by_class.setdefault(photo.label, []).append(photo)
    n_classes = len(photo_set.class_names)
    if protocol in OTHER_PROTOCOLS:
        measured = [label for label in sorted(by_class) if protocol == "other" or not is_extra_training_species(label)]
        gallery = [p for label in measured for p in _by_path(by_class[label])]
        return ProtocolSplit([], gallery, gallery, 0, leave_one_out=True)
    if protocol == "unseen":
        held_out_from = n_classes // 2
        train = [p for p in photo_set.photos if p.label < held_out_from]
        gallery = [p for label in sorted(by_class) if label >= held_out_from for p in _by_path(by_class[label])]
        return ProtocolSplit(train, gallery, gallery, held_out_from, leave_one_out=True)
    every = FRESH_EVERY if protocol == "fresh" else QUERY_EVERY
    held, rest = [], []
    for label in sorted(by_class):
        for index, photo in enumerate(_by_path(by_class[label])):
            (held if index % every == 0 else rest).append(photo)
    if protocol == "fresh":
        return ProtocolSplit(rest, held, held, n_classes, leave_one_out=True)
    train = list(photo_set.photos) if protocol == "all" else list(rest)
    return ProtocolSplit(train, held, rest, n_classes, held_out=protocol != "all")


def is_extra_training_species(label: int) -> bool:
    """Whether a species (its position by name) of another photo set is in the half that may train."""
    return label % EXTRA_SPECIES_EVERY == 0


def extra_training_species(
    extra: PhotoSet, split: ProtocolSplit, class_names: list[str], species: str
) -> tuple[list[Photo], list[str]]:
    """Photos of another set that train beside ``split`` (``species``: "even", the half ``other-held``
    leaves out, or "all"), labelled in the split's label space, and the names of the species they add.

    A species that is one of ``class_names`` (by ``species_key``) joins that class when the split trains
    it and is left out when it does not (it would leak a held-out species into training); the others
    take the labels after the split's ``train_classes``, in name order.
    """
    if species not in EXTRA_SPECIES:
        raise ValueError(f"extra species must be one of {EXTRA_SPECIES}, got {species!r}")
    known = {species_key(name): label for label, name in enumerate(class_names)}
    labels: dict[int, int | None] = {}
    added: list[str] = []
    for label, name in enumerate(extra.class_names):
        if species == "even" and not is_extra_training_species(label):
            continue
        same = known.get(species_key(name))
        if same is None:
            labels[label] = split.train_classes + len(added)
            added.append(name)
        else:
            labels[label] = same if same < split.train_classes else None
    photos = [Photo(photo.path, new) for photo in extra.photos if (new := labels.get(photo.label)) is not None]
    return photos, added


def with_extra_species(
    split: ProtocolSplit, class_names: list[str], extra: PhotoSet, species: str
) -> tuple[ProtocolSplit, list[str], list[Photo]]:
    """``split`` with the species of ``extra`` training too (``extra_training_species``): its training
    photos and class count grown, the names of its classes by label, and the extra photos alone."""
    photos, added = extra_training_species(extra, split, class_names, species)
    names = [*class_names[: split.train_classes], *added]
    return replace(split, train=split.train + photos, train_classes=len(names)), names, photos


def _by_path(photos: list[Photo]) -> list[Photo]:
    return sorted(photos, key=lambda p: p.path)


def species_key(name: str) -> str:
    """A class folder's species, comparable across photo sets: ``"017.Cardinal"``, ``"CARDINAL"`` and
    ``"Northern_Cardinal"`` give ``"cardinal"``, ``"cardinal"`` and ``"northerncardinal"`` (numbering,
    case, spaces, underscores and hyphens dropped)."""
    name = name.split(".", 1)[1] if name[:1].isdigit() and "." in name else name
    return "".join(character for character in name.lower() if character.isalnum())
