"""Checkpoint -> ONNX: the retrieval encoder graph, the codebooks as an initializer, metadata props."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import onnx

from app.imaging import PIXEL_OFFSET, PIXEL_SCALE, RESIZE_RATIO
from app.model import CODEBOOKS_NAME, FORMAT_VERSION, INPUT_NAME, METADATA_PREFIX, OUTPUT_NAMES
from training.inference import export_onnx
from training.model import PHPQ, RetrievalEncoder


def model_metadata(model: PHPQ, checkpoint: dict[str, Any], model_id: str) -> dict[str, str]:
    """The ``phpq.*`` metadata props of an exported model."""
    config = model.config
    train_config = checkpoint.get("train_config", {})
    metrics = checkpoint.get("metrics", {})
    return {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "backbone": config.backbone,
        "input_size": str(config.input_size),
        "pixel_offset": str(PIXEL_OFFSET),
        "pixel_scale": str(PIXEL_SCALE),
        "resize_ratio": str(RESIZE_RATIO),
        "n_subspaces": str(config.n_subspaces),
        "n_codewords": str(config.n_codewords),
        "bits": str(config.bits),
        "dim": str(config.dim),
        "model_config": json.dumps(config.to_dict()),
        "training_data": json.dumps({k: train_config.get(k) for k in ("data", "split", "protocol", "mode", "epochs")}),
        "class_names": json.dumps(checkpoint.get("class_names", [])),
        "validation": json.dumps({k: round(v, 4) for k, v in metrics.items()}),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def export_checkpoint(model: PHPQ, checkpoint: dict[str, Any], output: Path) -> str:
    """Write ``output`` and return its model id (SHA-256 of the graph, weights included)."""
    encoder = RetrievalEncoder(model.eval().cpu())
    with tempfile.TemporaryDirectory(prefix="phpq-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(encoder, model.config.input_size, path, list(OUTPUT_NAMES), constant_folding=False)
        graph_model = onnx.load(path)
    if graph_model.graph.input[0].name != INPUT_NAME:
        raise RuntimeError(f"exported input is named {graph_model.graph.input[0].name!r}, expected {INPUT_NAME!r}")
    if not any(init.name == CODEBOOKS_NAME for init in graph_model.graph.initializer):
        raise RuntimeError(f"the exported graph lost the {CODEBOOKS_NAME} initializer")
    model_id = hashlib.sha256(graph_model.graph.SerializeToString()).hexdigest()
    for key, value in model_metadata(model, checkpoint, model_id).items():
        entry = graph_model.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    graph_model.producer_name = "phpq-export"
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph_model, output)
    return model_id
