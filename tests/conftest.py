"""Shared fixtures: synthetic class-structured photo folders (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # the window tests need no display

SHARED_CUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub200" / "train"


def synthetic_photo(label: int, index: int, size: int = 96) -> Image.Image:
    """A photo whose class is told by its colour and stripe pattern, with per-photo noise and offset."""
    rng = np.random.default_rng(label * 1000 + index)
    hues = [(220, 60, 40), (40, 160, 70), (50, 80, 210), (230, 200, 40), (150, 60, 180), (60, 200, 200)]
    colour = np.array(hues[label % len(hues)], dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    period = 6 + 5 * (label % 3)
    angle = (label // 3) * np.pi / 4 + rng.normal(0, 0.1)
    stripes = 0.5 + 0.5 * np.sin((xx * np.cos(angle) + yy * np.sin(angle) + rng.integers(0, 20)) * 2 * np.pi / period)
    image = stripes[..., None] * colour + (1 - stripes[..., None]) * (255 - colour) * 0.4
    image += rng.normal(0, 18, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def write_image_folder(root: Path, n_classes: int = 4, per_class: int = 10, size: int = 96) -> Path:
    for label in range(n_classes):
        folder = root / f"{label + 1:03d}.class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            synthetic_photo(label, index, size).save(folder / f"photo_{index:03d}.jpg", quality=92)
    return root


EXTRA_SPECIES = ["Alpha Bird", "CLASS_1", "CLASS_4", "Delta Bird", "Echo Bird"]  # sorted: labels 0..4


def write_extra_set(root: Path) -> Path:
    """Another photo set: three new species, and two of synthetic_folder_6's ("class_1", "class_4")."""
    for label, name in enumerate(EXTRA_SPECIES):
        (root / name).mkdir(parents=True)
        for index in range(3):
            synthetic_photo(10 + label, index, 48).save(root / name / f"p{index}.jpg")
    return root


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes x 10 photos, ImageFolder layout."""
    return write_image_folder(tmp_path_factory.mktemp("synthetic"), n_classes=4, per_class=10)


@pytest.fixture(scope="session")
def synthetic_folder_6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 classes x 10 photos: the unseen protocol trains on 3 classes and retrieves among the other 3."""
    return write_image_folder(tmp_path_factory.mktemp("synthetic6"), n_classes=6, per_class=10)


def tiny_overrides(data: Path, output: Path, cache: Path) -> list[str]:
    """A config that trains in seconds on CPU."""
    return [
        f'data="{data}"',
        f'output="{output}"',
        f'cache_dir="{cache}"',
        "model.input_size=64",
        "model.encode_size=64",
        "model.dim=32",
        "model.n_subspaces=4",
        "model.n_codewords=16",
        "model.topk=4",
        "model.descriptor_dim=16",
        "model.general_dim=0",  # the general descriptor and the collection gate have tests of their own
        "model.collection_gate={}",
        "views=3",
        "epochs=6",
        "partial_epochs=2",
        "partial_views=2",
        "batch_size=16",
        "eval_every=3",
        "workers=0",
        "warmup_epochs=1",
        "lr=0.01",
    ]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, synthetic_folder: Path) -> Path:
    """A tiny PHPQ model trained on the 4 synthetic classes (all photos) and exported to ONNX."""
    from phpq_train.config import load_config
    from phpq_train.export.cli import export_main
    from phpq_train.train import train

    work = tmp_path_factory.mktemp("tiny_model")
    config = load_config(None, [*tiny_overrides(synthetic_folder, work / "run", work / "cache"), 'protocol="all"'])
    train(config)
    output = work / "tiny.onnx"
    assert export_main([str(work / "run" / "last.pt"), "-o", str(output), "--parity-photos", "8"]) == 0
    return output


def write_photo(path: Path, label: int, index: int, size: int = 96) -> Path:
    """One synthetic photo of class ``label`` at ``path`` (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_photo(label, index, size).save(path)
    return path
