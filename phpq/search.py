"""The in-memory matrix of one model (codes and descriptors) and the fused top-k search over it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from phpq.db import IndexDatabase
from phpq.descriptor import from_blobs
from phpq.fusion import AdaptiveWeight, CollectionCentring, NeighbourRerank, SearchSteps, agreement
from phpq.gate import GatedRanking
from phpq.model import Encoding, PHPQModel
from phpq.pq import decode, lookup_tables
from phpq.scan import DescriptorScan, Scorer, pack_codes


@dataclass(frozen=True)
class SearchHit:
    image_id: int
    path: Path
    similarity: float  # w * ADC / M + (1 - w) * descriptor similarity (ADC / M for codes only), about
    # [-1, 1]; with query expansion, its mean over the query and its best photos
    species: str | None = None  # the photo's species label, if it has one
    same_photo: bool = False  # a byte-identical copy of the query photo (these come first)
    # The photo's own similarity to the query on one scale for every query: at the model's first-scan w,
    # without the per-query weight, query expansion or neighbour re-ranking (``CodeMatrix.own_similarities``)
    own_similarity: float | None = None


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    n_searched: int  # photos with a code of the active model (after the folder filter)
    timings_ms: dict[str, float]
    weight: float | None = None  # the code weight w this query was ranked with (None: codes alone)
    query_encoding: Encoding | None = None  # what the model gave for the query photo (one row)
    known_species: bool | None = None  # the model's collection gate ranked as for known species (None: no gate)


class Ranking(NamedTuple):
    """``CodeMatrix.search``'s answer."""

    scores: np.ndarray  # similarities, best first
    image_ids: np.ndarray
    n_searched: int  # photos searched (after the folder filter)
    weight: float | None  # the w the query was ranked with (its own, with a per-query weight); None: codes alone
    known_species: bool | None = None  # a collection gate's choice: ranked as for known species; None: no gate


@dataclass(frozen=True)
class Query:
    """One query as the matrix scores it: similarity = w * ADC / M + (1 - w) * descriptor . (stored - mean).

    ``descriptor`` is None for a codes-only (format 1) model, whose similarity is ADC / M whatever w is.
    Without collection centring ``mean`` is None and the descriptor term is the cosine of unit vectors.
    With whitening, stored forms compare with each other through ``metric`` (W^2 of CollectionCentring).
    """

    table: np.ndarray  # [M, K] inner products of the query's sub-vectors with the codewords
    descriptor: np.ndarray | None  # [E] unit vector
    weight: float  # w, the weight of the code similarity (with ``adaptive``: of the first scan only)
    # Query expansion: with ``expansion`` = n > 0, the search first finds the query's n best photos, then
    # ranks by the mean of the similarities to the query and to those n (their stored code and descriptor).
    expansion: int = 0
    codebooks: np.ndarray | None = None  # [M, K, d], needed to expand with stored codes
    # A per-query weight: the first scan's candidates, scored by code alone and by descriptor alone,
    # say how far the two agree on this query, and that sets the w every later step uses.
    adaptive: AdaptiveWeight | None = None
    rerank: NeighbourRerank | None = None  # the best photos re-ranked by their neighbours among them
    # Collection centring: the search subtracts the collection's mean descriptor from the query (made a
    # unit vector again) and from every stored one, and may whiten both; ``mean`` and ``metric`` are the
    # collection's once resolved.
    centring: CollectionCentring | None = None
    mean: np.ndarray | None = None
    metric: np.ndarray | None = None
    # A collection gate (the model's own settings only) picks the ranking for the collection searched; as
    # for known species, the descriptor's first ``trained[0]`` dims alone (their share of its cosine
    # ``trained[1]``) are compared, as if they were the whole descriptor.
    gate: GatedRanking | None = None
    trained: tuple[int, float] | None = None


def model_query(
    model: PHPQModel,
    subvectors: np.ndarray,
    descriptor: np.ndarray | None,
    weight: float | None = None,
    steps: SearchSteps | None = None,
) -> Query:
    """The query of a photo's sub-vectors [M, d] and descriptor [E] under a model's search settings, at a
    fixed ``weight`` and with a user's ``steps`` after the first scan when given; the one place both
    ``phpq search`` and ``phpq-eval --model`` build their queries."""
    settings = model.info.search.at_weight(weight).with_steps(steps)
    table = lookup_tables(subvectors[None], model.codebooks)[0]
    return Query(
        table,
        descriptor,
        settings.fusion_weight,
        settings.query_expansion,
        model.codebooks,
        settings.adaptive,
        settings.rerank,
        settings.centring,
        gate=GatedRanking.of_model(model.info, settings.gate),
    )


# The second stage (per-query weight, query expansion, neighbour re-ranking) re-ranks this many of the
# first scan's best photos (or k, when more are asked for): a photo outside them would have to climb past
# a thousand others on the strength of 3 neighbours or a weight 0.2 away.
EXPANSION_CANDIDATES = 1000


class CodeMatrix:
    """Every code (and, for a format-2 model, every int8 descriptor) of one model, packed for the scan
    kernel, with the image and folder id of each row.

    Loaded from SQLite in one query and then kept in sync by the library as batches are committed.
    Rows are removed by moving the last row into the hole, so the matrix stays dense. A photo without a
    stored descriptor gets a zero one (descriptor similarity 0).
    """

    def __init__(self, model_id: str, n_subspaces: int, descriptor_dim: int = 0):
        self.model_id = model_id
        self.n_subspaces = n_subspaces
        self.descriptor_dim = descriptor_dim
        self.lock = threading.Lock()
        self._words = pack_codes(np.zeros((0, n_subspaces), np.uint8))
        self._descriptors = np.zeros((0, descriptor_dim), np.int8)
        self._scales = np.zeros(0, np.float32)
        self._image_ids = np.zeros(0, np.int64)
        self._folder_ids = np.zeros(0, np.int64)
        self._row_of: dict[int, int] = {}
        self._size = 0
        # The sum of the stored unit descriptors, for collection centring; ``_metric`` caches its
        # whitening (W^2) per setting until the rows next change.
        self._descriptor_total = np.zeros(descriptor_dim, np.float64)
        self._metric: dict[tuple[CollectionCentring, int], np.ndarray | None] = {}
        # The fraction of the collection's photos of a known species, per gate probability and prototypes,
        # until the rows next change.
        self._known: dict[tuple[float, int], float] = {}

    @classmethod
    def load(cls, db: IndexDatabase, model_id: str, n_subspaces: int, descriptor_dim: int = 0) -> CodeMatrix:
        matrix = cls(model_id, n_subspaces, descriptor_dim)
        stored = db.load_encodings(model_id)
        matrix.upsert(
            stored.image_ids,
            stored.folder_ids,
            stored.codes.reshape(len(stored.image_ids), n_subspaces),
            matrix.descriptors_from_blobs(stored.descriptors),
        )
        return matrix

    def descriptors_from_blobs(self, blobs: list[bytes | None]) -> tuple[np.ndarray, np.ndarray] | None:
        """Stored descriptor blobs -> (int8 values [N, E], scales [N]); a missing one becomes zeros."""
        if not self.descriptor_dim:
            return None
        values = np.zeros((len(blobs), self.descriptor_dim), np.int8)
        scales = np.zeros(len(blobs), np.float32)
        present = [i for i, blob in enumerate(blobs) if blob is not None]
        if present:
            values[present], scales[present] = from_blobs([blobs[i] for i in present], self.descriptor_dim)
        return values, scales

    def __len__(self) -> int:
        return self._size

    def _reserve(self, capacity: int) -> None:
        if capacity <= len(self._image_ids):
            return
        capacity = max(capacity, 2 * len(self._image_ids), 1024)

        def grown(array: np.ndarray) -> np.ndarray:
            bigger = np.zeros((capacity, *array.shape[1:]), array.dtype)
            bigger[: self._size] = array[: self._size]
            return bigger

        self._words, self._descriptors, self._scales = grown(self._words), grown(self._descriptors), grown(self._scales)
        self._image_ids, self._folder_ids = grown(self._image_ids), grown(self._folder_ids)

    def upsert(
        self,
        image_ids: np.ndarray,
        folder_ids: np.ndarray,
        codes: np.ndarray,
        descriptors: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Add or replace the codes [N, M] (and int8 descriptors [N, E] with their scales [N]) of these photos."""
        if len(image_ids) == 0:
            return
        if codes.shape[1] != self.n_subspaces:
            raise ValueError(f"codes have {codes.shape[1]} sub-spaces, this matrix holds {self.n_subspaces}")
        values, scales = descriptors if descriptors is not None else (None, None)
        if self.descriptor_dim and (values is None or values.shape != (len(image_ids), self.descriptor_dim)):
            raise ValueError(f"this matrix holds {self.descriptor_dim}-dim descriptors with every code")
        words = pack_codes(codes)
        with self.lock:
            self._reserve(self._size + len(image_ids))
            rows = np.empty(len(image_ids), np.int64)
            replaced = np.zeros(len(image_ids), bool)
            for n, image_id in enumerate(image_ids.tolist()):
                row = self._row_of.get(image_id)
                replaced[n] = row is not None
                if row is None:
                    row = self._row_of[image_id] = self._size
                    self._size += 1
                rows[n] = row
            self._image_ids[rows] = image_ids
            self._folder_ids[rows] = folder_ids
            self._words[rows] = words
            if values is not None and self.descriptor_dim:
                self._count(rows[replaced], -1.0)
                self._descriptors[rows] = values
                self._scales[rows] = scales
                self._count(rows, 1.0)

    def remove(self, image_ids: list[int]) -> None:
        with self.lock:
            if self.descriptor_dim:  # their descriptors leave the sum in one block, before rows move
                leaving = {self._row_of[i] for i in image_ids if i in self._row_of}
                self._count(np.fromiter(leaving, np.int64, len(leaving)), -1.0)
            for image_id in image_ids:
                row = self._row_of.pop(image_id, None)
                if row is None:
                    continue
                last = self._size - 1
                if row != last:
                    moved_id = int(self._image_ids[last])
                    for array in (self._words, self._descriptors, self._scales, self._image_ids, self._folder_ids):
                        array[row] = array[last]
                    self._row_of[moved_id] = row
                self._size = last

    def move(self, image_id: int, folder_id: int) -> None:
        """A photo moved to another folder keeps its code."""
        with self.lock:
            row = self._row_of.get(image_id)
            if row is not None:
                self._folder_ids[row] = folder_id

    def remove_folder(self, folder_id: int) -> None:
        with self.lock:
            ids = self._image_ids[: self._size][self._folder_ids[: self._size] == folder_id].tolist()
        self.remove(ids)

    def _count(self, rows: np.ndarray, sign: float) -> None:
        """Add (sign 1) or take away (-1) these rows' descriptors in the collection's sum, a block at a
        time. Call with the lock held."""
        for start in range(0, len(rows), 65536):
            self._descriptor_total += sign * self._stored(rows[start : start + 65536]).sum(axis=0, dtype=np.float64)
        self._metric.clear()
        self._known.clear()

    def _stored(self, rows: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
        """The stored descriptors of these rows as float32 unit vectors [n, E], less ``mean`` when given.
        Call with the lock held."""
        stored = self._descriptors[rows].astype(np.float32) * self._scales[rows, None]
        return stored if mean is None else stored - mean

    def known_fraction(self, gated: GatedRanking, codebooks: np.ndarray) -> float:
        """The fraction of the collection's photos (of at most ``WHITENING_SAMPLE`` evenly spaced ones) whose
        stored code, reconstructed, the model's class prototypes give a probability of at least the gate's
        for some species (1 for an empty collection). Call with the lock held."""
        key = (gated.gate.probability, id(gated.prototypes.vectors))
        if key not in self._known:
            rows = CollectionCentring.sample(self._size)
            if len(rows) == 0:
                return 1.0
            codes = self._words[rows].view(np.uint8)[:, : self.n_subspaces]
            self._known[key] = gated.known_fraction(codes, codebooks)
        return self._known[key]

    def _gated(self, query: Query) -> tuple[Query, bool | None]:
        """The query as its collection gate ranks it in this collection, and whether as for known species
        (None: no gate). Call with the lock held."""
        gated = query.gate
        if gated is None or query.descriptor is None or not self.descriptor_dim:
            return query, None
        if gated.gate.known(self.known_fraction(gated, query.codebooks)):
            return replace(query, gate=None, trained=gated.trained), True
        gate = gated.gate
        elsewhere = {"weight": gate.weight, "adaptive": None, "expansion": gate.query_expansion, "rerank": gate.rerank}
        return replace(query, gate=None, **elsewhere), False

    def _centred(self, query: Query) -> Query:
        """The query under collection centring: the collection's mean descriptor resolved, subtracted from
        the query's, the rest made a unit vector, whitened when the setting says so. With ``trained``, only
        the descriptor's first dims count, centred, whitened and made a unit vector among themselves: their
        metric (W^2 of them, over their share of the cosine) is the query's, zero elsewhere. Call with the
        lock held."""
        centring = query.centring
        if query.descriptor is None or not self.descriptor_dim or (centring is None and query.trained is None):
            return query
        mean = np.zeros(self.descriptor_dim, np.float32)
        if centring is not None:
            mean = centring.mean(self._descriptor_total, self._size)
        dims, share = query.trained or (self.descriptor_dim, 1.0)
        key = (centring or CollectionCentring(0), dims)
        if key not in self._metric:
            sample = self._stored(CollectionCentring.sample(self._size))[:, :dims]
            within = key[0].metric(sample, mean[:dims])
            if dims == self.descriptor_dim:
                self._metric[key] = within
            else:  # the trained part alone: zero on the rest, scaled to the part's unit length
                metric = np.zeros((self.descriptor_dim, self.descriptor_dim), np.float32)
                metric[:dims, :dims] = (np.eye(dims, dtype=np.float32) if within is None else within) / share
                self._metric[key] = metric
        metric = self._metric[key]
        descriptor = CollectionCentring.query(query.descriptor, mean, metric)
        return replace(query, descriptor=descriptor, centring=None, trained=None, mean=mean, metric=metric)

    def _scorer(self, query: Query) -> Scorer:
        """The one definition of a query's similarity to the rows, for the scan and for listed rows alike:
        w * ADC / M + (1 - w) * descriptor . (stored - mean), with the weights folded into the kernel's
        table and descriptor query, and the constant -(1 - w) * descriptor . mean spread over the table's M
        rows, so that the kernel's sum is the similarity itself. Call with the lock held."""
        size = self._size
        if query.descriptor is None or not self.descriptor_dim or query.weight == 1.0:  # codes alone
            return Scorer(query.table / self.n_subspaces, self._words[:size])
        if query.descriptor.shape != (self.descriptor_dim,):
            raise ValueError(f"query descriptor {query.descriptor.shape}, matrix holds {self.descriptor_dim} dims")
        descriptor = (1.0 - query.weight) * query.descriptor
        descriptors = DescriptorScan(descriptor, self._descriptors[:size], self._scales[:size])
        offset = 0.0 if query.mean is None else -float(descriptor @ query.mean)
        table = (query.table * query.weight + offset) / self.n_subspaces
        return Scorer(table, self._words[:size], descriptors)

    def _expanded(self, query: Query, rows: list[int]) -> Query:
        """The query averaged with the stored forms of these rows (their reconstructed codes' lookup
        tables and their int8 descriptors, centred as the query is), so its similarity to a photo is the
        mean of the query's and theirs. Call with the lock held."""
        codes = self._words[rows].view(np.uint8)[:, : self.n_subspaces]
        table = (query.table + lookup_tables(decode(codes, query.codebooks), query.codebooks).sum(axis=0)) / (
            1 + len(rows)
        )
        descriptor = query.descriptor
        if descriptor is not None and self.descriptor_dim:
            stored = self._stored(np.asarray(rows, np.int64), query.mean)
            if query.metric is not None:
                stored = stored @ query.metric
            descriptor = (descriptor + stored.sum(axis=0)) / (1 + len(rows))
        return Query(table, descriptor, query.weight, mean=query.mean, metric=query.metric)

    def _mutual(self, query: Query, rows: np.ndarray) -> np.ndarray:
        """The similarities of these rows to each other [n, n] at the query's weight (stored codes by SDC,
        int8 descriptors, centred as the query is). Call with the lock held."""
        codes = self._words[rows].view(np.uint8)[:, : self.n_subspaces]
        reconstructed = decode(codes, query.codebooks).reshape(len(rows), -1)  # SDC: their inner products
        similarity = reconstructed @ reconstructed.T / self.n_subspaces
        if query.descriptor is None or not self.descriptor_dim or query.weight == 1.0:
            return similarity
        stored = self._stored(rows, query.mean)
        weighted = stored if query.metric is None else stored @ query.metric
        return query.weight * similarity + (1 - query.weight) * (weighted @ stored.T)

    def _adapted(self, query: Query, candidates: np.ndarray) -> Query:
        """The query at its own weight: the agreement of the candidates' rankings by code alone and by
        descriptor alone picks it (``query.adaptive``). Call with the lock held."""
        if query.adaptive is None or query.descriptor is None or not self.descriptor_dim:
            return query
        size = self._size
        code_scores = Scorer(query.table / self.n_subspaces, self._words[:size]).score(candidates)
        descriptor_scores = self._stored(candidates, query.mean) @ query.descriptor.astype(np.float32)
        weight = query.adaptive.weight(agreement(code_scores, descriptor_scores, query.adaptive.k))
        return replace(query, weight=weight, adaptive=None)

    def _reranked(
        self, query: Query, scorer: Scorer, k: int, mask: np.ndarray | None, hidden: set[int]
    ) -> tuple[Query, np.ndarray, np.ndarray]:
        """The two-stage search of a per-query weight, query expansion and neighbour re-ranking: the first
        scan's top candidates (not the query itself, not its copies) set the query's weight, their best
        photos join the query, the candidates are re-ranked exactly with the resulting query, and the best
        of them by their neighbours among them. Returns the query at its weight (unexpanded), the scores
        and the rows. Call with the lock held."""
        n_candidates = max(k, EXPANSION_CANDIDATES) + len(hidden)
        _, candidates = scorer.top_k(n_candidates, mask)
        candidates = np.array([row for row in candidates.tolist() if int(self._image_ids[row]) not in hidden], np.int64)
        query = self._adapted(query, candidates)
        rescored = self._scorer(query).score(candidates)
        if query.expansion > 0:
            neighbours = candidates[np.lexsort((candidates, -rescored))[: query.expansion]]
            rescored = self._scorer(self._expanded(query, neighbours.tolist())).score(candidates)
        order = np.lexsort((candidates, -rescored))
        scores, rows = rescored[order], candidates[order]
        if query.rerank is not None and len(rows) > 1:
            best = rows[: query.rerank.depth]
            scores[: len(best)] = query.rerank.rescored(scores[: len(best)], self._mutual(query, best))
            reordered = np.lexsort((best, -scores[: len(best)]))
            scores[: len(best)], rows[: len(best)] = scores[reordered], best[reordered]
        return query, scores, rows

    def own_similarities(self, query: Query, image_ids: list[int]) -> np.ndarray:
        """Each listed photo's own similarity to ``query`` at the query's weight ``w``, centred as the search
        is, without a per-query weight, query expansion or neighbour re-ranking: a scale that means the same
        for every query. NaN for a photo no longer in the matrix."""
        plain = replace(query, expansion=0, adaptive=None, rerank=None)
        with self.lock:
            rows = np.array([self._row_of.get(image_id, -1) for image_id in image_ids], np.int64)
            present = rows >= 0
            similarities = np.full(len(rows), np.nan, np.float32)
            similarities[present] = self._scorer(self._centred(plain)).score(rows[present])
        return similarities

    def search(
        self,
        query: Query,
        k: int,
        folder_ids: list[int] | None = None,
        exclude: set[int] | None = None,
        first: list[int] | None = None,
    ) -> Ranking:
        """Top ``k`` photos for a query: similarities, image ids, number of photos searched, weight.

        The photos in ``first`` (pinned copies of the query) lead the list, scored by the same scorer as
        the scan, against the query itself; ids no longer in the matrix are skipped. ``exclude`` never
        appears. With a per-query weight, query expansion or neighbour re-ranking, a first scan picks the
        top candidates (``EXPANSION_CANDIDATES``, or k when larger); they set the query's weight and give
        its best photos, are ranked by the final query's similarity (with expansion, the mean over the
        query and its best photos), and the best of them re-ranked by their neighbours among them.
        """
        exclude = exclude or set()
        with self.lock:
            size = self._size
            mask = None
            if folder_ids is not None:
                mask = np.isin(self._folder_ids[:size], np.asarray(folder_ids, np.int64))
            n_searched = size if mask is None else int(mask.sum())
            query, known_species = self._gated(query)
            query = self._centred(query)
            scorer = self._scorer(query)
            pinned_rows = np.array([self._row_of[i] for i in first or [] if i in self._row_of][:k], np.int64)
            pinned_ids = self._image_ids[pinned_rows]
            hidden = exclude | set(pinned_ids.tolist())
            if query.expansion > 0 or query.adaptive is not None or query.rerank is not None:
                query, scores, rows = self._reranked(query, scorer, k, mask, hidden)
                scorer = self._scorer(query)
            else:
                scores, rows = scorer.top_k(k + len(hidden), mask)
            pinned_scores = scorer.score(pinned_rows)  # copies of the query: their similarity to the query
            image_ids = self._image_ids[rows]
        keep = np.array([image_id not in hidden for image_id in image_ids.tolist()], dtype=bool)
        scores = np.concatenate([pinned_scores, scores[keep]])[:k]
        fused = query.descriptor is not None and self.descriptor_dim > 0
        ids = np.concatenate([pinned_ids, image_ids[keep]])[:k]
        return Ranking(scores, ids, n_searched, query.weight if fused else None, known_species)
