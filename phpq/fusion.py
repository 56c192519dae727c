"""The per-query weight of the fused ranking: the codes rank a trained species' photos well, and map a
bird of a species they never saw onto some trained species' code. Where a query's best photos by code
and by descriptor agree, the codes know its species and get the high weight; where they disagree, the
low one. ``bench/query_adaptive.py`` measures the signal and chooses the values."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class AdaptiveWeight:
    """w = ``high`` for a query whose ``k`` best photos by code and by descriptor share at least a
    fraction ``threshold``, else ``low``."""

    low: float
    high: float
    threshold: float
    k: int

    def __post_init__(self) -> None:
        for name in ("low", "high", "threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"adaptive weight: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.k < 1:
            raise ValueError(f"adaptive weight: k must be at least 1, got {self.k}")

    @classmethod
    def from_json(cls, text: str) -> AdaptiveWeight | None:
        """The metadata form (a JSON object; ``{}`` when the model has none)."""
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"adaptive weight: expected a JSON object, got {text!r}")
        try:
            return cls(**values) if values else None
        except TypeError as error:
            raise ValueError(f"adaptive weight: {error}") from error

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def weight(self, agreement: float) -> float:
        return self.high if agreement >= self.threshold else self.low

    def describe(self) -> str:
        return f"w={self.low:g} or {self.high:g} by query"


def agreement(code_scores: np.ndarray, descriptor_scores: np.ndarray, k: int) -> float:
    """The fraction of the ``k`` best photos by code (ties broken by descriptor, then by position) that
    are also among the ``k`` best by descriptor (ties by position); both arrays score the same photos."""
    k = min(k, len(code_scores))
    if k == 0:
        return 0.0
    positions = np.arange(len(code_scores))
    by_code = np.lexsort((positions, -descriptor_scores, -code_scores))[:k]
    by_descriptor = np.lexsort((positions, -descriptor_scores))[:k]
    return len(np.intersect1d(by_code, by_descriptor)) / k
