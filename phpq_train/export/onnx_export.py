"""Checkpoint -> ONNX: the retrieval encoder graph, the codebooks as an initializer, metadata props."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from phpq.imaging import PIXEL_OFFSET, PIXEL_SCALE
from phpq.model import CODEBOOKS_NAME, FORMAT_VERSION, INPUT_NAME, METADATA_PREFIX, OUTPUT_NAMES
from phpq.prototypes import PROTOTYPES_KEY
from phpq_train.inference import export_onnx
from phpq_train.model import PHPQ, ModelConfig, RetrievalEncoder


def model_metadata(model: PHPQ, checkpoint: dict[str, Any], model_id: str, fp16_weights: bool) -> dict[str, str]:
    """The ``phpq.*`` metadata props of an exported model."""
    config = model.config
    train_config = checkpoint.get("train_config", {})
    metrics = checkpoint.get("metrics", {})
    general = getattr(model, "general", None)
    return {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "backbone": config.backbone,
        "input_size": str(config.encode_size),
        "pixel_offset": str(PIXEL_OFFSET),
        "pixel_scale": str(PIXEL_SCALE),
        "resize_ratio": str(config.encode_resize_ratio),
        "n_subspaces": str(config.n_subspaces),
        "n_codewords": str(config.n_codewords),
        "bits": str(config.bits),
        "dim": str(config.dim),
        "descriptor_dim": str(config.descriptor_dim + (general.dim if general is not None else 0)),
        "general_descriptor": json.dumps(
            {} if general is None else {"dim": general.dim, "weight": general.weight, **general.metadata()}
        ),
        **search_metadata(config),
        **carried_prototypes(config, checkpoint),
        "mirror_average": str(config.mirror_average).lower(),
        "training_data": json.dumps({k: train_config.get(k) for k in ("data", "split", "protocol", "mode", "epochs")}),
        "class_names": json.dumps(checkpoint.get("class_names", [])),
        "validation": json.dumps({k: round(v, 4) for k, v in metrics.items()}),
        "weights": "float16" if fp16_weights else "float32",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **checkpoint.get("description", {}),
    }


def search_metadata(config: ModelConfig) -> dict[str, str]:
    """The metadata props that say how the app ranks (and the model config they are part of)."""
    return {
        "fusion_weight": str(config.fusion_weight),
        "adaptive_weight": json.dumps(config.adaptive_weight),
        "neighbour_rerank": json.dumps(config.neighbour_rerank),
        "collection_centring": json.dumps(config.collection_centring),
        "collection_gate": json.dumps(config.collection_gate),
        "query_expansion": str(config.query_expansion),
        "zoom": json.dumps(config.zoom),
        "model_config": json.dumps(config.to_dict()),
    }


# Fields of a model config that change a photo's code: prototypes of the code's sub-vectors (phpq.prototypes)
# hold for an export again only where these are the source's.
CODE_GEOMETRY_FIELDS = ("encode_size", "encode_resize_ratio", "mirror_average", "zoom")


def carried_prototypes(config: ModelConfig, checkpoint: dict[str, Any]) -> dict[str, str]:
    """The class prototypes of an exported model written again (``phpq_train.export.from_onnx``), as
    metadata, when they are of the code's sub-vectors and a photo's code is what it was; else none."""
    text = checkpoint.get("class_prototypes")
    source = checkpoint.get("model_config", {})
    if not text or json.loads(text).get("embedding") != "subvectors":
        return {}
    if any(source.get(field) != getattr(config, field) for field in CODE_GEOMETRY_FIELDS):
        return {}
    return {PROTOTYPES_KEY: text}


def model_identity(graph_model: onnx.ModelProto, zoom: str) -> str:
    """The model id: SHA-256 of the graph (weights included) and, when the model zooms in on small birds, of
    its zoom setting, since that changes a photo's code too (phpq.zoom); an index keeps codes of one id."""
    digest = hashlib.sha256(graph_model.graph.SerializeToString())
    if json.loads(zoom or "{}"):
        digest.update(json.dumps(json.loads(zoom), sort_keys=True).encode())
    return digest.hexdigest()


def write_metadata(source: Path, output: Path, changes: dict[str, str]) -> str:
    """Copy the exported model ``source`` to ``output`` with ``changes`` to its ``phpq.*`` metadata; the
    graph, and so the model id (an index keeps its codes), stay the same. Returns the model id."""
    graph_model = onnx.load(source)
    props = {prop.key: prop.value for prop in graph_model.metadata_props}
    props |= {METADATA_PREFIX + key: value for key, value in changes.items()}
    del graph_model.metadata_props[:]
    for key, value in props.items():
        graph_model.metadata_props.add(key=key, value=value)
    model_id = model_identity(graph_model, props.get(METADATA_PREFIX + "zoom", "{}"))
    if model_id != props.get(METADATA_PREFIX + "model_id"):
        raise ValueError(f"{source}: its graph no longer matches its model id; export it again")
    partial = output.with_suffix(".partial")
    onnx.save(graph_model, partial)
    partial.replace(output)
    return model_id


FP16_MIN_ELEMENTS = 4096


def round_weights_to_fp16(model: PHPQ) -> None:
    """Round every floating parameter and buffer to float16 precision, in place (values stay float32).

    The exported file then stores exactly these values as float16, so PyTorch and ONNX Runtime compute
    from identical weights and the parity check keeps its 1e-4 bound.
    """
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def store_weights_as_fp16(graph_model: onnx.ModelProto) -> None:
    """Store large float32 initializers as float16 plus a Cast back to float32 (ONNX Runtime folds the
    Cast at load time, so inference still runs in float32). The codebooks stay float32."""
    graph = graph_model.graph
    casts = []
    for initializer in graph.initializer:
        if (
            initializer.data_type != onnx.TensorProto.FLOAT
            or initializer.name == CODEBOOKS_NAME
            or int(np.prod(initializer.dims)) < FP16_MIN_ELEMENTS
        ):
            continue
        values = numpy_helper.to_array(initializer).astype(np.float16)
        name = initializer.name
        initializer.CopyFrom(numpy_helper.from_array(values, name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def export_checkpoint(model: PHPQ, checkpoint: dict[str, Any], output: Path, fp16_weights: bool = False) -> str:
    """Write ``output`` and return its model id (SHA-256 of the graph, weights included).

    With ``fp16_weights`` the model's weights are first rounded to float16 in place and the file stores
    them as float16 (about half the size). The graph takes photos at the model's encode size. With the
    model's ``mirror_average`` the graph encodes each photo and its mirror image and averages their
    pooled features (``RetrievalEncoder``).
    """
    if fp16_weights:
        round_weights_to_fp16(model)
    encoder = RetrievalEncoder(model.eval().cpu())
    with tempfile.TemporaryDirectory(prefix="phpq-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(encoder, model.config.encode_size, path, list(OUTPUT_NAMES), constant_folding=False)
        graph_model = onnx.load(path)
    if graph_model.graph.input[0].name != INPUT_NAME:
        raise RuntimeError(f"exported input is named {graph_model.graph.input[0].name!r}, expected {INPUT_NAME!r}")
    if not any(init.name == CODEBOOKS_NAME for init in graph_model.graph.initializer):
        raise RuntimeError(f"the exported graph lost the {CODEBOOKS_NAME} initializer")
    if fp16_weights:
        store_weights_as_fp16(graph_model)
    model_id = model_identity(graph_model, json.dumps(model.config.zoom))
    for key, value in model_metadata(model, checkpoint, model_id, fp16_weights).items():
        entry = graph_model.metadata_props.add()
        entry.key, entry.value = METADATA_PREFIX + key, value
    graph_model.producer_name = "phpq-export"
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph_model, output)
    return model_id
