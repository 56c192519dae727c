"""Training configuration: dataclasses, TOML config files and ``--set section.key=value`` overrides."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomllib

from phpq_train.losses import LossConfig
from phpq_train.model import ModelConfig

MODES = ("cached", "finetune")


@dataclass
class TrainConfig:
    """Everything one training run needs. ``mode`` picks the CPU path (frozen backbone, cached pyramid
    features) or the GPU path (end-to-end fine-tuning on photos)."""

    data: str = "../shared/data/cub200/train"
    split: str = "train"  # for the official CUB_200_2011 layout only
    protocol: str = "val"  # val | unseen | all (see phpq.eval.datasets.split_protocol)
    mode: str = "cached"
    views: int = 5  # cached mode: view 0 is the centre crop, the others random resized crops + flips
    train_on_centre_crop: bool = True  # cached mode: sample view 0 too (database photos are training photos)
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    backbone_lr: float = 1e-4  # finetune mode
    trainable_blocks: int = -1  # finetune mode: -1 all, n the last n blocks + head
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    kmeans_epoch: int = 1  # codebooks initialised by k-means on the embeddings after this many epochs
    eval_every: int = 5
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision on CUDA
    workers: int = 2
    engine: str = "auto"  # inference engine for caching/evaluation on CPU: auto | onnxruntime | torch
    pretrained: bool = True
    output: str = "runs/phpq"
    cache_dir: str = "runs/cache"
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "cached" and self.views < 2:
            raise ValueError("cached mode needs views >= 2 (the centre crop plus augmented views)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_value(text: str) -> Any:
    """A TOML value (numbers, booleans, lists, quoted strings) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


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
        target = values
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = parse_value(text.strip())
    return values


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the TOML file, then the overrides."""
    values: dict[str, Any] = tomllib.loads(Path(path).read_text()) if path else {}
    return TrainConfig(**apply_overrides(values, overrides or []))
