"""Search by photo over the active model's code matrix, and the matrix kept in step with the index.

The matrix is loaded in one query on first use. Every committed indexing batch is applied to it (the
``Searcher`` is the indexer's listener), and changes another process commits are noticed through
SQLite's ``data_version`` and reloaded before the next search.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from phpq.db import EncodedImage, ImageRecord, IndexDatabase
from phpq.errors import LibraryError
from phpq.fusion import SearchSteps
from phpq.imaging import decode_for_network, preprocess
from phpq.index import FolderChanges, content_hash, describe_error
from phpq.model import Encoding, PHPQModel, photo_source
from phpq.registry import ModelRegistry
from phpq.scan import warm_up_in_background
from phpq.search import CodeMatrix, Query, SearchHit, SearchResult, model_query
from phpq.zoom import PhotoSource

log = logging.getLogger(__name__)


class Searcher:
    """Queries (a photo file or an image in memory) against the active model's codes.

    ``lock`` is shared with the model registry, which drops the matrix when the active model changes."""

    def __init__(self, db: IndexDatabase, registry: ModelRegistry, lock: threading.RLock):
        self.db = db
        self.registry = registry
        self.lock = lock
        self._matrix: CodeMatrix | None = None
        self._data_version = db.data_version()

    # The matrix -----------------------------------------------------------------------------------

    def matrix(self) -> CodeMatrix:
        """The active model's code matrix, loaded in one query, reloaded when another process wrote."""
        with self.lock:
            version = self.db.data_version()
            model_id = self.registry.active_id
            stale = self._matrix is None or self._matrix.model_id != model_id or version != self._data_version
            if stale:
                info = self.registry.model(model_id).info
                self._matrix = CodeMatrix.load(self.db, model_id, info.n_subspaces, info.descriptor_dim)
                self._data_version = version
            return self._matrix

    def invalidate(self) -> None:
        """Drop the matrix; the next search loads it again."""
        with self.lock:
            self._matrix = None

    def _update(self, update: Callable[[CodeMatrix], None]) -> None:
        """Apply a change to the matrix if it is loaded (otherwise the next load sees it)."""
        with self.lock:
            if self._matrix is not None:
                update(self._matrix)

    def folder_synced(self, changes: FolderChanges) -> None:
        """Codes dropped for changed files, folder ids updated for moved ones."""

        def apply(matrix: CodeMatrix) -> None:
            matrix.remove(changes.invalidated)
            for image_id, folder_id in changes.moved.items():
                matrix.move(image_id, folder_id)

        self._update(apply)

    def images_removed(self, image_ids: list[int]) -> None:
        self._update(lambda matrix: matrix.remove(image_ids))

    def folder_removed(self, folder_id: int) -> None:
        self._update(lambda matrix: matrix.remove_folder(folder_id))

    def encoded_stored(self, model_id: str, results: list[EncodedImage]) -> None:
        """A committed batch of codes (of the matrix's model) joins the matrix."""
        self._update(lambda matrix: _add_codes(matrix, self.db, results) if matrix.model_id == model_id else None)

    def prepare(self) -> None:
        """Make the first search as fast as the next ones: load the model and run it once, load the
        code matrix, then start the scan kernel's warm-up (about a second) in the background."""
        model = self.registry.model()
        model.encode(np.zeros((1, 3, model.info.input_size, model.info.input_size), np.float32))
        self.matrix()
        warm_up_in_background()

    # Queries --------------------------------------------------------------------------------------

    def search_file(
        self,
        query: Path,
        top_k: int,
        folder_ids: list[int] | None,
        weight: float | None,
        steps: SearchSteps | None = None,
    ) -> SearchResult:
        """Photos that look most like the photo at ``query`` (it need not be indexed; if it is, it is
        left out of its own results). Indexed byte-identical copies of it come first: photos of one
        species can share a code, and so a score, and a copy should not hide among them."""
        clock = time.perf_counter()
        model = self.registry.model()
        try:
            decoded = decode_for_network(Path(query), model.info.preprocessing)
        except Exception as error:  # any unreadable query gets one readable message
            raise LibraryError(f"cannot read the query photo {query}: {describe_error(error)}") from error
        indexed = self.db.image_by_path(Path(query).resolve(), model.info.model_id)
        exclude = {indexed.id} if indexed is not None else set()
        copies = [copy for copy in self._indexed_copies(Path(query), model.info.model_id) if copy.id not in exclude]
        timings = {"decode": _lap(clock)}
        source = photo_source(Path(query), decoded)
        query_vectors, encoding = self._query(model, decoded.array, source, decoded.full_size, weight, steps, timings)
        return self._scan(query_vectors, encoding, top_k, folder_ids, exclude, timings, copies)

    def search_image(
        self,
        image: Image.Image,
        top_k: int,
        folder_ids: list[int] | None,
        weight: float | None,
        steps: SearchSteps | None = None,
    ) -> SearchResult:
        """Photos that look most like an image already in memory (a paste from the clipboard)."""
        clock = time.perf_counter()
        model = self.registry.model()
        rgb = image.convert("RGB")
        array = preprocess(rgb, model.info.preprocessing)
        timings = {"decode": _lap(clock)}
        query = self._query(model, array, lambda _: rgb, rgb.size, weight, steps, timings)
        return self._scan(*query, top_k, folder_ids, set(), timings)

    def _indexed_copies(self, path: Path, model_id: str) -> list[ImageRecord]:
        """Indexed photos with a code whose content hash and size match the file at ``path``."""
        try:
            size = path.stat().st_size
            digest = content_hash(path, size)
        except OSError:
            return []
        return sorted(
            (record for record in self.db.images_with_hash(digest, size, model_id) if record.has_code),
            key=lambda record: record.path,
        )

    def _query(
        self,
        model: PHPQModel,
        image: np.ndarray,
        source: PhotoSource,
        full_size: tuple[int, int],
        weight: float | None,
        steps: SearchSteps | None,
        timings: dict[str, float],
    ) -> tuple[Query, Encoding]:
        """Encode a preprocessed query image (``source`` decodes it again for a zoom) into the query the
        matrix scores (timed as "encode") at the user's ``weight`` and ``steps`` (None: the model's), with
        the model's encoding of it."""
        clock = time.perf_counter()
        encoding = model.encode_photos(image[None], [source], [full_size])
        timings["encode"] = _lap(clock)
        descriptor = None if encoding.descriptors is None else encoding.descriptors[0]
        if weight is not None and not model.info.has_descriptor:
            log.warning("model %s gives codes only (format 1): the weight is not used", model.info.model_id[:12])
        try:
            return model_query(model, encoding.subvectors[0], descriptor, weight, steps), encoding
        except ValueError as error:
            raise LibraryError(str(error)) from error

    def _scan(
        self,
        query: Query,
        encoding: Encoding,
        top_k: int,
        folder_ids: list[int] | None,
        exclude: set[int],
        timings: dict[str, float],
        copies: list[ImageRecord] | None = None,
    ) -> SearchResult:
        """Scan the matrix with a query; ``copies`` (within the folders) go first, scored the same way and
        marked ``same_photo``. Each hit carries its species label; the result, the query's encoding."""
        clock = time.perf_counter()
        pinned = [copy.id for copy in copies or [] if folder_ids is None or copy.folder_id in folder_ids]
        ranking = self.matrix().search(query, top_k, folder_ids, exclude, pinned)
        scores, image_ids = ranking.scores, ranking.image_ids
        timings["scan"] = _lap(clock)
        clock = time.perf_counter()
        paths = self.db.paths(image_ids.tolist())
        reference = replace(query, weight=self.registry.model().info.search.fusion_weight)  # one scale for all
        own = self.matrix().own_similarities(reference, image_ids.tolist())
        labels = self.db.labels(image_ids.tolist())
        hits = [
            SearchHit(image_id, paths[image_id], score, labels.get(image_id), image_id in pinned, own_similarity)
            for image_id, score, own_similarity in zip(image_ids.tolist(), scores.tolist(), own.tolist(), strict=True)
            if image_id in paths
        ]
        timings["fetch"] = _lap(clock)
        return SearchResult(hits, ranking.n_searched, timings, ranking.weight, encoding, ranking.known_species)


def _add_codes(matrix: CodeMatrix, db: IndexDatabase, results: list[EncodedImage]) -> None:
    coded = [result for result in results if result.code is not None]
    if not coded:
        return
    image_ids = np.array([result.image_id for result in coded], np.int64)
    folder_of = db.folder_ids(image_ids.tolist())
    keep = np.array([image_id in folder_of for image_id in image_ids.tolist()], bool)  # rows deleted meanwhile
    folder_ids = np.array([folder_of[image_id] for image_id in image_ids[keep].tolist()], np.int64)
    codes = np.frombuffer(b"".join(result.code for result in coded), np.uint8).reshape(len(coded), -1)
    descriptors = matrix.descriptors_from_blobs([result.descriptor for result in coded])
    if descriptors is not None:
        descriptors = (descriptors[0][keep], descriptors[1][keep])
    matrix.upsert(image_ids[keep], folder_ids, codes[keep], descriptors)


def _lap(start: float) -> float:
    return (time.perf_counter() - start) * 1000
