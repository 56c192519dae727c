"""How the fused ranking is shaped after the first scan.

- The per-query weight: the codes rank a trained species' photos well, and map a bird of a species
  they never saw onto some trained species' code. Where a query's best photos by code and by
  descriptor agree, the codes know its species and get the high weight; where they disagree, the low
  one. ``bench/query_adaptive.py`` measures the signal and chooses the values.
- The neighbour re-ranking: each of the query's best photos also counts its nearest neighbours among
  them, so a photo whose look-alikes look like the query climbs, and a lone false match drops.
- The collection centring: descriptors are compared after subtracting the mean descriptor of the
  photos searched, so what all of a collection's birds share (the light, the kind of photo) stops
  counting and what sets one species apart counts more; optionally whitened by the collection's
  covariance, so that a few directions in which its photos differ most do not drown the others.
- The collection gate: a model trained on some species ranks their photos best with what it learned
  of them, and other birds best with the general look of the bird. Where most of a collection's photos
  look like species the model knows, its own search ranks as for them; else as for birds from
  elsewhere. ``bench/collection_gate.py`` measures the signal and chooses the values.

``SearchSettings`` holds them all, with the weight and the query expansion, as a model's metadata
states them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

Setting = TypeVar("Setting")

WHITENING_SAMPLE = 4096  # collection whitening measures the spread of at most this many photos


def setting_from_json(cls: type[Setting], text: str, what: str) -> Setting | None:
    """A search setting from its metadata form, a JSON object of its fields (``{}``: the model has none);
    ValueError, naming ``what``, for anything else."""
    values = json.loads(text)
    if not isinstance(values, dict):
        raise ValueError(f"{what}: expected a JSON object, got {text!r}")
    try:
        return cls(**values) if values else None
    except TypeError as error:
        raise ValueError(f"{what}: {error}") from error


def require_unit_interval(setting: object, what: str, names: tuple[str, ...]) -> None:
    """ValueError, naming ``what`` and the field, unless each named field of ``setting`` is in [0, 1]."""
    for name in names:
        if not 0.0 <= getattr(setting, name) <= 1.0:
            raise ValueError(f"{what}: {name} must be in [0, 1], got {getattr(setting, name)}")


@dataclass(frozen=True)
class AdaptiveWeight:
    """w = ``high`` for a query whose ``k`` best photos by code and by descriptor share at least a
    fraction ``threshold``, else ``low``."""

    low: float
    high: float
    threshold: float
    k: int

    def __post_init__(self) -> None:
        require_unit_interval(self, "adaptive weight", ("low", "high", "threshold"))
        if self.k < 1:
            raise ValueError(f"adaptive weight: k must be at least 1, got {self.k}")

    @classmethod
    def from_json(cls, text: str) -> AdaptiveWeight | None:
        """The metadata form (a JSON object; ``{}`` when the model has none)."""
        return setting_from_json(cls, text, "adaptive weight")

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


@dataclass(frozen=True)
class NeighbourRerank:
    """The query's ``depth`` best photos are re-ranked by the mean of their own similarity and the mean
    similarity of their ``neighbours`` nearest photos among those ``depth``."""

    depth: int
    neighbours: int

    def __post_init__(self) -> None:
        if self.depth < 2 or not 1 <= self.neighbours < self.depth:
            raise ValueError(
                "neighbour re-ranking: needs depth >= 2 and 1 <= neighbours < depth,"
                f" got depth {self.depth}, neighbours {self.neighbours}"
            )

    @classmethod
    def from_json(cls, text: str) -> NeighbourRerank | None:
        """The metadata form (a JSON object; ``{}`` when the model has none)."""
        return setting_from_json(cls, text, "neighbour re-ranking")

    def rescored(self, scores: np.ndarray, mutual: np.ndarray) -> np.ndarray:
        """New scores of the best photos, given their scores (best first) and their similarities to each
        other [n, n]: (own + mean over the nearest neighbours) / 2. A neighbour scores at least the last
        of them, so the result never falls below the photos after them."""
        n = len(scores)
        if n < 2:
            return scores
        others = np.array(mutual, dtype=np.float64)
        np.fill_diagonal(others, -np.inf)
        k = min(self.neighbours, n - 1)
        positions = np.broadcast_to(np.arange(n), (n, n))
        nearest = np.lexsort((positions, -others), axis=1)[:, :k]  # ties: the better-ranked photo
        return ((scores + scores[nearest].mean(axis=1)) / 2).astype(scores.dtype)


@dataclass(frozen=True)
class CollectionCentring:
    """The descriptor similarity of a query q to a photo d is unit(W (q - m)) . W (d - m), m the mean
    stored descriptor of the collection shrunk toward 0 as if the collection held ``prior`` more photos
    there: m = sum(d) / (n + prior). W whitens by the collection's covariance C about m (from ``sample``
    rows) shrunk toward its mean variance c = trace(C) / E: W^2 = c (whitening * C + (1 - whitening) * c
    * I)^-1, so ``whitening`` 0 is W = I (centring alone) and a larger one evens out the directions in
    which the collection's photos differ most."""

    prior: int
    whitening: float = 0.0

    def __post_init__(self) -> None:
        if self.prior < 0:
            raise ValueError(f"collection centring: prior must be at least 0, got {self.prior}")
        if not 0.0 <= self.whitening < 1.0:
            raise ValueError(f"collection centring: whitening must be in [0, 1), got {self.whitening}")

    @classmethod
    def from_json(cls, text: str) -> CollectionCentring | None:
        """The metadata form (a JSON object; ``{}`` when the model has none)."""
        return setting_from_json(cls, text, "collection centring")

    def mean(self, total: np.ndarray, count: int) -> np.ndarray:
        """m from the sum of a collection's ``count`` stored descriptors."""
        return (total / max(count + self.prior, 1)).astype(np.float32)

    @staticmethod
    def sample(count: int) -> np.ndarray:
        """The rows of a collection of ``count`` photos whose spread the whitening measures: all of them up
        to ``WHITENING_SAMPLE``, else evenly spaced ones (a 256 x 256 covariance needs no more)."""
        return np.arange(0, count, max(1, -(-count // WHITENING_SAMPLE)))

    def metric(self, sample: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
        """W^2 [E, E] from the stored descriptors of ``sample`` rows and the collection's m (None for W = I:
        no whitening, or no spread to measure)."""
        if not self.whitening or len(sample) == 0:
            return None
        centred = np.asarray(sample, np.float64) - mean
        covariance = centred.T @ centred / len(centred)
        level = float(np.trace(covariance)) / len(mean)
        if level <= 0.0:
            return None
        shrunk = self.whitening * covariance + (1.0 - self.whitening) * level * np.eye(len(mean))
        return (level * np.linalg.inv(shrunk)).astype(np.float32)

    @staticmethod
    def query(descriptors: np.ndarray, mean: np.ndarray, metric: np.ndarray | None) -> np.ndarray:
        """The vectors [..., E] whose inner product with (d - m) is the similarity: W^2 (q - m) / |W (q - m)|."""
        centred = np.asarray(descriptors, np.float32) - mean
        weighted = centred if metric is None else centred @ metric
        norms = np.sqrt(np.maximum((centred * weighted).sum(axis=-1, keepdims=True), 1e-24))
        return (weighted / norms).astype(np.float32)

    def describe(self) -> str:
        return "centred and whitened on the collection" if self.whitening else "centred on the collection"


@dataclass(frozen=True)
class CollectionGate:
    """How a model's own search ranks in a collection: as for the species it knows when at least
    ``fraction`` of the collection's photos look like one of them (the class probability of their stored
    code, by the model's class prototypes, at least ``probability``): its own settings with the trained
    descriptor alone (the untrained network's view left out); else as for birds from elsewhere: the
    whole descriptor, the code weight ``weight`` for every query and these steps after the first scan."""

    probability: float
    fraction: float
    weight: float
    query_expansion: int = 0
    rerank: NeighbourRerank | None = None

    def __post_init__(self) -> None:
        require_unit_interval(self, "collection gate", ("probability", "fraction", "weight"))
        if self.query_expansion < 0:
            raise ValueError(f"collection gate: query_expansion must be at least 0, got {self.query_expansion}")

    @classmethod
    def from_json(cls, text: str) -> CollectionGate | None:
        """The metadata form (a JSON object, its ``rerank`` one too; ``{}`` when the model has none)."""
        gate = setting_from_json(cls, text, "collection gate")
        if gate is not None and isinstance(gate.rerank, dict):
            return replace(gate, rerank=NeighbourRerank.from_json(json.dumps(gate.rerank)))
        return gate

    def known(self, fraction: float) -> bool:
        """Whether a collection with this fraction of photos of known species is ranked as for them."""
        return fraction >= self.fraction

    def describe(self) -> str:
        steps = SearchSteps(self.query_expansion, self.rerank).describe()
        return (
            f"as for known species where at least {self.fraction:.1%} of the collection looks like them"
            f" (probability {self.probability:g}), else w={self.weight:g}, {steps}"
        )


@dataclass(frozen=True)
class SearchSteps:
    """The steps after the first scan when a user chooses them over the model's own (``phpq.ranking``):
    how many best photos expand the query, and the neighbour re-ranking (None: none)."""

    query_expansion: int
    rerank: NeighbourRerank | None

    def describe(self) -> str:
        expansion = f"query expansion {self.query_expansion}" if self.query_expansion else "no query expansion"
        if self.rerank is None:
            return f"{expansion}, no neighbour re-ranking"
        return f"{expansion}, the {self.rerank.depth} best re-ranked by {self.rerank.neighbours} neighbours"


@dataclass(frozen=True)
class SearchSettings:
    """How a model ranks: similarity = w * ADC / M + (1 - w) * descriptor similarity, and the steps after
    the first scan. ``descriptor_dim`` 0 is a codes-only (format 1) model: ADC / M alone."""

    descriptor_dim: int
    fusion_weight: float  # w (with ``adaptive``: the first scan's)
    query_expansion: int = 0  # the query's this many best photos join it for a second scan
    adaptive: AdaptiveWeight | None = None
    rerank: NeighbourRerank | None = None
    centring: CollectionCentring | None = None
    gate: CollectionGate | None = None  # the model's own settings only: a user's weight or steps end it

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> SearchSettings:
        """The settings a model's metadata states (ValueError when one is malformed)."""
        if metadata["format_version"] == "1":
            return cls(0, 1.0, rerank=NeighbourRerank.from_json(metadata.get("neighbour_rerank", "{}")))
        weight = float(metadata["fusion_weight"])
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"fusion_weight {weight} must be in [0, 1]")
        descriptor_dim = int(metadata["descriptor_dim"])
        if descriptor_dim < 1:
            raise ValueError(f"descriptor_dim {descriptor_dim} must be at least 1")
        return cls(
            descriptor_dim,
            weight,
            int(metadata.get("query_expansion", 0)),
            AdaptiveWeight.from_json(metadata.get("adaptive_weight", "{}")),
            NeighbourRerank.from_json(metadata.get("neighbour_rerank", "{}")),
            CollectionCentring.from_json(metadata.get("collection_centring", "{}")),
            CollectionGate.from_json(metadata.get("collection_gate", "{}")),
        )

    @property
    def fused(self) -> bool:
        return self.descriptor_dim > 0

    def at_weight(self, weight: float | None) -> SearchSettings:
        """These settings with a fixed w for every query (None: unchanged)."""
        if weight is not None and not 0.0 <= weight <= 1.0:
            raise ValueError(f"the weight of the code similarity must be in [0, 1], got {weight}")
        if weight is None or not self.fused:
            return self
        return replace(self, fusion_weight=weight, adaptive=None, gate=None)

    def with_steps(self, steps: SearchSteps | None) -> SearchSettings:
        """These settings with a user's steps after the first scan (None: the model's own)."""
        if steps is None or not self.fused:
            return self
        return replace(self, query_expansion=steps.query_expansion, rerank=steps.rerank, gate=None)

    def describe(self) -> str:
        """ "codes + descriptor (fused, w=0.4 or 0.7 by query, query expansion 3, neighbour re-ranking,
        centred and whitened on the collection)", "codes + descriptor (fused, w=0.5)" or "codes only (format
        1)"."""
        if not self.fused:
            return "codes only (format 1)"
        parts = [self.adaptive.describe() if self.adaptive is not None else f"w={self.fusion_weight:g}"]
        if self.query_expansion:
            parts.append(f"query expansion {self.query_expansion}")
        if self.rerank is not None:
            parts.append("neighbour re-ranking")
        if self.centring is not None:
            parts.append(self.centring.describe())
        if self.gate is not None:
            parts.append(self.gate.describe())
        return f"codes + descriptor (fused, {', '.join(parts)})"
