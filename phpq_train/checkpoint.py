"""Checkpoint I/O: write and read ``last.pt`` (plain containers and tensors) and rebuild its model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from phpq_train.config import TrainConfig, recipe_values
from phpq_train.model import PHPQ, ModelConfig

CHECKPOINT_FORMAT = 1
TRAINING_ONLY = ("head.classifier.", "head.descriptor_classifier.")  # weights no exported model holds


def save_checkpoint(
    path: Path,
    model: PHPQ,
    config: TrainConfig,
    class_names: list[str],
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    history: list[dict] | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """Atomically write a checkpoint of plain containers and tensors (loadable with weights_only=True)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "class_names": list(class_names),
        "epoch": epoch,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history or [],
        "metrics": metrics or {},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``: no pickled code runs)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a PHPQ checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> PHPQ:
    """Rebuild the model of a checkpoint; backbone weights come from the checkpoint, not the wheels.
    Model fields added after the checkpoint was written (the app's search settings: query expansion,
    the per-query weight, ...) take the recipe's values."""
    recipe = recipe_values()["model"]
    model = PHPQ(ModelConfig(**{**recipe, **payload["model_config"]}), pretrained=False)
    if "exported_from" not in payload:
        model.load_state_dict(payload["state_dict"])
        return model.eval()
    # phpq_train.export.from_onnx: an exported file holds every weight but the training-only classifiers'
    missing = model.load_state_dict(payload["state_dict"], strict=False).missing_keys
    if any(not key.startswith(TRAINING_ONLY) for key in missing):
        raise ValueError(f"{payload['exported_from']} lacks weights: {', '.join(missing)}")
    return model.eval()
