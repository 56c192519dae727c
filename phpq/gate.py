"""The collection gate's judgement of a collection (``phpq.fusion.CollectionGate`` says what follows from
it): how many of its photos' stored codes the model's class prototypes recognise as one of its species.
The codes, not the continuous sub-vectors, since the index keeps only those; reconstructed from the
codebooks they look more certain than a fresh encoding, hence the gate's own probability
(``bench/collection_gate.py``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from phpq.fusion import CollectionGate
from phpq.model import ModelInfo, unit_rows
from phpq.pq import decode
from phpq.prototypes import ClassPrototypes

log = logging.getLogger(__name__)

_UNGATED: set[str] = set()  # models whose gate was not used, warned once


@dataclass(frozen=True)
class GatedRanking:
    """A model's collection gate with what it needs: the model's class prototypes of the code's
    sub-vectors, and the trained part of its descriptor, which alone ranks as for known species."""

    gate: CollectionGate
    prototypes: ClassPrototypes
    trained: tuple[int, float]  # its first dims, and their share 1 - b of the descriptor's cosine

    @classmethod
    def of_model(cls, info: ModelInfo, gate: CollectionGate | None) -> GatedRanking | None:
        """The model's gate, or None without one (or, logged, without prototypes of its code to judge by)."""
        if gate is None:
            return None
        prototypes = ClassPrototypes.from_model(info)
        if prototypes is None or prototypes.embedding != "subvectors":
            if info.model_id not in _UNGATED:
                _UNGATED.add(info.model_id)
                log.warning("model %s: its collection gate needs prototypes of its code; not used", info.model_id[:12])
            return None
        trained, weight = info.descriptor_parts[0]
        return cls(gate, prototypes, (trained.stop, weight))

    def known_fraction(self, codes: np.ndarray, codebooks: np.ndarray) -> float:
        """The share of these stored codes [N, M] whose reconstruction the prototypes give at least the gate's
        probability for some species."""
        reconstructed = unit_rows(decode(codes, codebooks).reshape(len(codes), -1))
        best = self.prototypes.probabilities(reconstructed).max(axis=1)
        return float(np.mean(best >= self.gate.probability))
