"""int8 variant of an exported model: ONNX Runtime static quantization (QDQ), calibrated on photos.

Only the convolutions and the fusion projection (Gemm/MatMul of the backbone and head) are quantized; the
sub-vector normalisation, the codebook similarities and the argmax stay in float, and the
``phpq_codebooks`` initializer is kept as float so the app reads the same codebooks.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from phpq.imaging import Preprocessing, load_and_preprocess
from phpq.model import CODEBOOKS_NAME, INPUT_NAME, METADATA_PREFIX
from phpq_train.export.onnx_export import model_identity


class PhotoCalibrationReader:
    """Feeds preprocessed photos to the ONNX Runtime calibrator in small batches."""

    def __init__(self, photos: list[Path], spec: Preprocessing, batch_size: int = 8):
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {INPUT_NAME: np.stack([load_and_preprocess(p, spec) for p in photos[i : i + batch_size]])}
            for i in range(0, len(photos), batch_size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # the calibrator reads the data once
        pass


def quantize_int8(fp32_path: Path, output: Path, calibration_photos: list[Path], preprocessing: Preprocessing) -> str:
    """Write the int8 QDQ model to ``output`` with the fp32 model's metadata and a new model id."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(fp32_path)
    excluded = [node.name for node in source.graph.node if CODEBOOKS_NAME in node.input]
    with tempfile.TemporaryDirectory(prefix="phpq-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(output),
            PhotoCalibrationReader(calibration_photos, preprocessing),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv", "Gemm", "MatMul"],
            nodes_to_exclude=excluded,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    quantized = onnx.load(output)
    zoom = next((prop.value for prop in source.metadata_props if prop.key == METADATA_PREFIX + "zoom"), "{}")
    model_id = model_identity(quantized, zoom)
    del quantized.metadata_props[:]
    for prop in source.metadata_props:
        entry = quantized.metadata_props.add()
        entry.key = prop.key
        entry.value = model_id if prop.key == METADATA_PREFIX + "model_id" else prop.value
    entry = quantized.metadata_props.add()
    entry.key, entry.value = METADATA_PREFIX + "precision", "int8"
    onnx.save(quantized, output)
    return model_id
