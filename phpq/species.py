"""Naming the bird: species suggestions from the user's labelled photos and from the model, and
search results grouped by species.

- The label vote: the query searches the collection with the descriptor alone (``VOTE_WEIGHT``: the
  code knows only the species the model was trained on, a user's labels can be any), and the
  ``VOTE_SIZE`` most similar labelled photos among the results vote for their species, each with weight
  exp((similarity - best similarity) / ``VOTE_TEMPERATURE``); the query's own label (the query photo
  itself, or a byte-identical copy, ``SearchHit.same_photo``) never counts. Confidence = the winner's
  share of the weight; below ``LABEL_THRESHOLD`` the vote is not confident.
- The model's suggestion, for a model whose metadata carries class prototypes
  (``phpq.class_prototypes``, written by ``python -m phpq_train.export.prototypes``): a softmax over the
  cosines of the query's embedding to each class's mean embedding, at the temperature the model was
  trained with; confident at or above the threshold stored beside them (chosen by
  ``bench/species.py``). A model without them makes no suggestion.

Both thresholds are chosen by ``python -m bench.species`` with the rules stated there and in
docs/results.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phpq.model import Encoding, ModelInfo
from phpq.prototypes import ClassPrototypes, model_embeddings
from phpq.search import SearchHit, SearchResult

IDENTIFY_DEPTH = 100  # the search results the vote looks among for labelled photos
VOTE_SIZE = 5  # labelled photos that vote
VOTE_TEMPERATURE = 0.02  # a vote's weight falls by e for each 0.02 of similarity below the best one's
VOTE_WEIGHT = 0.0  # the code weight w of the vote's search: the descriptor alone
LABEL_THRESHOLD = 0.75  # the label vote is confident from this share of the weight (chosen by bench/species.py)


@dataclass(frozen=True)
class Suggestion:
    """One candidate species for a photo."""

    species: str
    source: str  # "labels" or "model"
    confidence: float  # 0..1
    confident: bool
    evidence: str  # a plain sentence: "4 of the 5 closest labelled photos", "model: 93 %"


@dataclass(frozen=True)
class Identification:
    """What can be said of a photo's species: the confident suggestions first (at most one a source),
    then, from a source that is not sure, its two best candidates."""

    suggestions: list[Suggestion]

    def summary(self) -> str:
        """One plain line: "Probably X: evidence", "Not sure: X or Y", or "" when nothing is known."""
        confident = [s for s in self.suggestions if s.confident]
        if confident:
            best = confident[0].species
            evidence = "; ".join(s.evidence for s in confident if s.species == best)
            others = "".join(f"; {s.species}: {s.evidence}" for s in confident if s.species != best)
            return f"Probably {best}: {evidence}{others}"
        names = list(dict.fromkeys(s.species for s in self.suggestions))[:2]
        return f"Not sure: {' or '.join(names)}" if names else ""


def identification(*sources: list[Suggestion]) -> Identification:
    """Suggestions of several sources (each best first) in one Identification: confident ones first."""
    confident = [s for source in sources for s in source[:1] if s.confident]
    unsure = [s for source in sources if source and not source[0].confident for s in source[:2]]
    order = sorted(confident, key=lambda s: -s.confidence) + sorted(unsure, key=lambda s: -s.confidence)
    return Identification(order)


def vote_weight(info: ModelInfo) -> float | None:
    """The code weight of the vote's search (None: the model's own, for a model of codes alone)."""
    return VOTE_WEIGHT if info.has_descriptor else None


def identify(result: SearchResult, info: ModelInfo) -> Identification:
    """What a search's results (their labels) and the query's encoding (a model's prototypes) say."""
    prototypes = ClassPrototypes.from_model(info)
    encoding = result.query_encoding
    model = [] if prototypes is None or encoding is None else model_suggestions(prototypes, encoding)
    return identification(label_vote(result.hits), model)


def label_vote(hits: list[SearchHit], threshold: float = LABEL_THRESHOLD) -> list[Suggestion]:
    """The species of the ``VOTE_SIZE`` most similar labelled hits (copies of the query left out),
    weighted by similarity (see the module's doc); best first, [] when no hit has a label."""
    voters = [hit for hit in hits if hit.species is not None and not hit.same_photo][:VOTE_SIZE]
    if not voters:
        return []
    best = max(hit.similarity for hit in voters)
    weights: dict[str, float] = {}
    counts: dict[str, int] = {}
    for hit in voters:
        weights[hit.species] = weights.get(hit.species, 0.0) + float(np.exp((hit.similarity - best) / VOTE_TEMPERATURE))
        counts[hit.species] = counts.get(hit.species, 0) + 1
    total = sum(weights.values())
    ranked = sorted(weights, key=lambda species: (-weights[species], species))
    return [
        Suggestion(
            species,
            "labels",
            weights[species] / total,
            weights[species] / total >= threshold,
            f"{counts[species]} of the {len(voters)} closest labelled photos",
        )
        for species in ranked
    ]


def model_suggestions(prototypes: ClassPrototypes, encoding: Encoding) -> list[Suggestion]:
    """The two most probable species for the first photo of an encoding, best first."""
    probabilities = prototypes.probabilities(model_embeddings(encoding, prototypes.embedding)[:1])[0]
    best = np.argsort(-probabilities, kind="stable")[:2]
    return [
        Suggestion(
            prototypes.names[i],
            "model",
            float(probabilities[i]),
            bool(probabilities[i] >= prototypes.threshold),
            f"model: {round(100 * float(probabilities[i]))} %",
        )
        for i in best.tolist()
    ]


@dataclass(frozen=True)
class SpeciesGroup:
    """Search results of one species label (None: the unlabelled ones), in their search order."""

    species: str | None
    hits: list[SearchHit]
    best_similarity: float


def group_by_species(hits: list[SearchHit]) -> list[SpeciesGroup]:
    """Hits grouped by their label, best group (by its best similarity; ties: the one met first) first,
    the hits of a group in their search order; unlabelled hits form their own group, placed the same way."""
    members: dict[str | None, list[SearchHit]] = {}
    for hit in hits:
        members.setdefault(hit.species, []).append(hit)
    groups = [SpeciesGroup(species, group, max(hit.similarity for hit in group)) for species, group in members.items()]
    return sorted(groups, key=lambda group: -group.best_similarity)
