"""Training configuration: dataclasses, the bundled TOML recipe, config files and ``--set`` overrides.

The recipe (``phpq_train/recipes/cub_cpu.toml``) is the only source of the values: the dataclasses
declare the fields and check them, and carry no defaults (``ModelConfig.n_classes`` aside, which a run
derives from its data).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import tomllib

from phpq.eval.datasets import EXTRA_SPECIES, OTHER_PROTOCOLS, PROTOCOLS
from phpq_train.losses import LossConfig
from phpq_train.model import ModelConfig

MODES = ("cached", "partial", "finetune")
TRAINING_PROTOCOLS = tuple(p for p in PROTOCOLS if p not in OTHER_PROTOCOLS)  # those train on nothing
RECIPE = Path(__file__).resolve().parent / "recipes" / "cub_cpu.toml"


@dataclass(kw_only=True)
class TrainConfig:
    """Everything one training run needs. ``mode`` picks a CPU path (frozen backbone and cached pyramid
    features, or that plus the last blocks trained from cached maps) or the GPU path (end-to-end
    fine-tuning on photos). Values: see the recipe."""

    data: str
    split: str  # for the official CUB_200_2011 layout only
    protocol: str  # val | fresh | unseen | all (see phpq.eval.datasets.split_protocol)
    extra_data: str  # "" or another photo set (one folder per species) whose species train too
    extra_species: str  # even (the half the other-held protocol leaves out) | all
    extra_trains_descriptor: bool  # false: the extra species train the code alone, not the descriptor
    mode: str
    views: int  # cached mode: view 0 is the centre crop, the others random resized crops + flips
    train_on_centre_crop: bool  # cached mode: sample view 0 too (database photos are training photos)
    epochs: int
    batch_size: int
    lr: float
    backbone_lr: float  # partial and finetune modes
    trainable_blocks: int  # partial and finetune modes: the last n blocks + head (finetune: -1 all)
    partial_epochs: int  # partial mode: the last n epochs train those blocks too
    partial_views: int  # partial mode: cached views of the frozen part's maps (view 0 the centre crop)
    weight_decay: float
    warmup_epochs: int
    kmeans_epoch: int  # codebooks initialised by k-means on the embeddings after this many epochs
    eval_every: int
    seed: int
    device: str  # auto | cpu | cuda
    amp: bool  # mixed precision on CUDA
    workers: int
    engine: str  # inference engine for caching/evaluation on CPU: auto | onnxruntime | torch
    pretrained: bool
    output: str
    cache_dir: str
    model: ModelConfig
    loss: LossConfig

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.protocol not in TRAINING_PROTOCOLS:
            raise ValueError(f"protocol must be one of {TRAINING_PROTOCOLS}, got {self.protocol!r}")
        if self.extra_species not in EXTRA_SPECIES:
            raise ValueError(f"extra_species must be one of {EXTRA_SPECIES}, got {self.extra_species!r}")
        if self.mode == "cached" and self.views < 2:
            raise ValueError("cached mode needs views >= 2 (the centre crop plus augmented views)")
        if self.mode == "partial":
            self._check_partial()

    def _check_partial(self) -> None:
        if self.trainable_blocks < 1:
            raise ValueError(f"partial mode trains the last trainable_blocks >= 1 blocks, got {self.trainable_blocks}")
        if not 1 <= self.partial_epochs <= self.epochs:
            raise ValueError(
                f"partial_epochs must be within 1..epochs ({self.epochs}), got {self.partial_epochs}: "
                'set partial_epochs too, or mode="cached" to keep the whole backbone frozen'
            )
        least = 1 if self.train_on_centre_crop else 2
        if not least <= self.partial_views <= self.views:
            raise ValueError(f"partial_views must be within {least}..views ({self.views}), got {self.partial_views}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_value(text: str) -> Any:
    """A TOML value (numbers, booleans, lists, quoted strings) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied; tables (dicts) merge key by key, other values replace, and so does
    an empty table (``{}``: a setting turned off, such as ``model.collection_gate={}``)."""
    merged = dict(base)
    for key, value in changes.items():
        both_tables = isinstance(value, dict) and bool(value) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if both_tables else value
    return merged


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to a nested dict of config values."""
    known = {f.name for f in fields(TrainConfig)}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, text = item.split("=", 1)
        *sections, name = key.strip().split(".")
        if not sections and name not in known:
            raise ValueError(f"unknown config key {name!r}")
        change: dict[str, Any] = {name: parse_value(text.strip())}
        for section in reversed(sections):
            change = {section: change}
        values = merge(values, change)
    return values


def recipe_values() -> dict[str, Any]:
    """The bundled recipe as nested TOML values."""
    return tomllib.loads(RECIPE.read_text())


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """The bundled recipe, then the changes in the TOML file ``path``, then the overrides."""
    values = recipe_values()
    if path is not None:
        values = merge(values, tomllib.loads(Path(path).read_text()))
    return TrainConfig(**apply_overrides(values, overrides or []))
