"""An exported model back to a checkpoint payload, so that ``phpq-export`` can write it again in today's
format (for example with the general descriptor) when the training run that made it is gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import numpy_helper

from phpq.model import CODEBOOKS_NAME, METADATA_PREFIX
from phpq_train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

FP16_SUFFIX = "_fp16"  # phpq_train.export.onnx_export.store_weights_as_fp16
# RetrievalEncoder's parameter names -> PHPQ's (the graph keeps the encoder's names for its weights).
PREFIXES = {"backbone.": "backbone.", "fusion.": "head.fusion.", "descriptor.": "head.descriptor."}
DESCRIPTION_KEYS = ("title", "summary")  # phpq.db.ModelRecord.title and .summary
# The fitted buffers of phpq_train.general.GeneralDescriptor and HeadGeneralDescriptor.
GENERAL_FIT = ("general.mean", "general.projection", "general.linear", "general.offset")


def payload_from_export(path: Path) -> dict[str, Any]:
    """A checkpoint payload (``phpq_train.checkpoint``) with the weights, model config, class names and
    training data of an exported model. The training-only classifiers are not in the file: they are absent
    from the state dict, which ``model_from_checkpoint`` accepts for such a payload."""
    graph_model = onnx.load(path)
    metadata = {
        entry.key[len(METADATA_PREFIX) :]: entry.value
        for entry in graph_model.metadata_props
        if entry.key.startswith(METADATA_PREFIX)
    }
    if "model_config" not in metadata:
        raise ValueError(f"{path} has no model_config in its metadata: it was not exported by phpq-export")
    state_dict, general_fit, general = {}, {}, {}
    for initializer in graph_model.graph.initializer:
        name = initializer.name.removesuffix(FP16_SUFFIX)
        values = torch.from_numpy(numpy_helper.to_array(initializer).astype("float32", copy=False).copy())
        if name in GENERAL_FIT:
            general_fit[name.split(".")[1]] = values
        elif name.startswith("general."):
            general[name] = values
        if name == CODEBOOKS_NAME:
            state_dict["head.quantizer.codebooks"] = values
        for source, target in PREFIXES.items():
            if name.startswith(source):
                state_dict[target + name[len(source) :]] = values
    # The exporter stores a tensor once: the general descriptor's copies of untrained weights (the frozen
    # batch-norm statistics of the trained blocks, say) stand for the backbone's own.
    first_block = json.loads(metadata.get("general_descriptor") or "{}").get("first_block")
    model_config = json.loads(metadata["model_config"])
    if first_block is not None:  # exported before general_from existed: the untrained blocks ran again
        model_config.setdefault("general_from", "untrained_blocks")
    for name, values in general.items():
        part, rest = name.split(".", 2)[1:]
        if part == "blocks":
            index, rest = rest.split(".", 1)
            state_dict.setdefault(f"backbone.blocks.{first_block + int(index)}.{rest}", values)
        else:
            state_dict.setdefault(f"backbone.{part}.{rest}", values)
    return {
        "format": CHECKPOINT_FORMAT,
        "model_config": model_config,
        "train_config": json.loads(metadata.get("training_data", "{}")),
        "class_names": json.loads(metadata.get("class_names", "[]")),
        "epoch": None,
        "state_dict": state_dict,
        "optimizer": None,
        "history": [],
        "metrics": json.loads(metadata.get("validation", "{}")),
        "exported_from": str(path),
        "exported_format": metadata.get("format_version"),  # phpq.model.FORMAT_VERSION when it was written
        "general_fit": general_fit or None,  # the general descriptor's centring and projection, when it has one
        "class_prototypes": metadata.get("class_prototypes"),  # phpq.prototypes, when it has them
        "description": {key: metadata[key] for key in DESCRIPTION_KEYS if key in metadata},  # for a user
    }


def payload_from_file(path: Path) -> dict[str, Any]:
    """A checkpoint (``.pt``) or an exported model (``.onnx``) as a checkpoint payload."""
    return payload_from_export(path) if Path(path).suffix == ".onnx" else load_checkpoint(path)
