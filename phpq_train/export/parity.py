"""Parity of an exported model with its PyTorch source: onnx.checker, then ONNX Runtime vs torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from phpq.imaging import load_and_preprocess
from phpq.model import PHPQModel
from phpq_train.model import PHPQ, RetrievalEncoder

MAX_ABS_DIFF = 1e-4
MIN_CODE_AGREEMENT = 0.995


@dataclass
class ParityReport:
    photos: int
    max_abs_diff: float
    code_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.code_agreement >= MIN_CODE_AGREEMENT

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        return (
            f"parity {verdict} on {self.photos} photos: max |sub-vector, descriptor or attention diff| "
            f"{self.max_abs_diff:.2e} "
            f"(limit {MAX_ABS_DIFF:.0e}), identical codes {100 * self.code_agreement:.2f}% "
            f"(limit {100 * MIN_CODE_AGREEMENT:.1f}%)"
        )


def check_parity(model: PHPQ, onnx_path: Path, photos: list[Path], batch_size: int = 16) -> ParityReport:
    """Full onnx.checker pass, then compare sub-vectors, descriptors and codes of ONNX Runtime and torch."""
    onnx.checker.check_model(str(onnx_path), full_check=True)
    runtime = PHPQModel(onnx_path, prefer_cuda=False)
    encoder = RetrievalEncoder(model.eval().cpu())
    spec = runtime.info.preprocessing  # the pixels the app will feed it, from its metadata
    max_diff, same, total = 0.0, 0, 0
    for start in range(0, len(photos), batch_size):
        batch = np.stack([load_and_preprocess(p, spec) for p in photos[start : start + batch_size]])
        encoded = runtime.encode(batch)
        with torch.inference_mode():
            torch_sub, torch_codes, torch_descriptors, torch_attention = encoder(torch.from_numpy(batch))
        pairs = (
            (encoded.subvectors, torch_sub),
            (encoded.descriptors, torch_descriptors),
            (encoded.attention, torch_attention),
        )
        for ours, theirs in pairs:
            max_diff = max(max_diff, float(np.abs(ours - theirs.numpy()).max()))
        same += int((encoded.codes.astype(np.int64) == torch_codes.numpy()).sum())
        total += encoded.codes.size
    return ParityReport(len(photos), max_diff, same / max(1, total))
