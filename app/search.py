"""The in-memory code matrix of one model and the ADC top-k search over it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.db import IndexDatabase
from app.scan import pack_codes, top_k


@dataclass(frozen=True)
class SearchHit:
    image_id: int
    path: Path
    similarity: float  # ADC score / M: the mean cosine over sub-spaces, in [-1, 1]


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    n_searched: int  # photos with a code of the active model (after the folder filter)
    timings_ms: dict[str, float]


class CodeMatrix:
    """Every code of one model, packed for the scan kernel, with the image and folder id of each row.

    Loaded from SQLite in one query and then kept in sync by the library as batches are committed.
    Rows are removed by moving the last row into the hole, so the matrix stays dense.
    """

    def __init__(self, model_id: str, n_subspaces: int):
        self.model_id = model_id
        self.n_subspaces = n_subspaces
        self.lock = threading.Lock()
        self._words = pack_codes(np.zeros((0, n_subspaces), np.uint8))
        self._image_ids = np.zeros(0, np.int64)
        self._folder_ids = np.zeros(0, np.int64)
        self._row_of: dict[int, int] = {}
        self._size = 0

    @classmethod
    def load(cls, db: IndexDatabase, model_id: str, n_subspaces: int) -> CodeMatrix:
        matrix = cls(model_id, n_subspaces)
        image_ids, folder_ids, codes = db.load_codes(model_id)
        matrix.upsert(image_ids, folder_ids, codes.reshape(len(image_ids), n_subspaces))
        return matrix

    def __len__(self) -> int:
        return self._size

    def _reserve(self, capacity: int) -> None:
        if capacity <= len(self._image_ids):
            return
        capacity = max(capacity, 2 * len(self._image_ids), 1024)
        words = np.zeros((capacity, self._words.shape[1]), np.uint64)
        words[: self._size] = self._words[: self._size]
        image_ids = np.zeros(capacity, np.int64)
        image_ids[: self._size] = self._image_ids[: self._size]
        folder_ids = np.zeros(capacity, np.int64)
        folder_ids[: self._size] = self._folder_ids[: self._size]
        self._words, self._image_ids, self._folder_ids = words, image_ids, folder_ids

    def upsert(self, image_ids: np.ndarray, folder_ids: np.ndarray, codes: np.ndarray) -> None:
        """Add or replace the codes [N, M] of these photos."""
        if len(image_ids) == 0:
            return
        if codes.shape[1] != self.n_subspaces:
            raise ValueError(f"codes have {codes.shape[1]} sub-spaces, this matrix holds {self.n_subspaces}")
        words = pack_codes(codes)
        with self.lock:
            self._reserve(self._size + len(image_ids))
            for image_id, folder_id, word in zip(image_ids.tolist(), folder_ids.tolist(), words, strict=True):
                row = self._row_of.get(image_id)
                if row is None:
                    row = self._size
                    self._size += 1
                    self._row_of[image_id] = row
                    self._image_ids[row] = image_id
                self._words[row] = word
                self._folder_ids[row] = folder_id

    def remove(self, image_ids: list[int]) -> None:
        with self.lock:
            for image_id in image_ids:
                row = self._row_of.pop(image_id, None)
                if row is None:
                    continue
                last = self._size - 1
                if row != last:
                    moved_id = int(self._image_ids[last])
                    self._words[row] = self._words[last]
                    self._image_ids[row] = moved_id
                    self._folder_ids[row] = self._folder_ids[last]
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

    def codes_of(self, image_id: int) -> np.ndarray | None:
        """The code [M] of one photo, or None."""
        with self.lock:
            row = self._row_of.get(image_id)
            if row is None:
                return None
            return self._words[row : row + 1].view(np.uint8)[0, : self.n_subspaces].copy()

    def search(
        self, table: np.ndarray, k: int, folder_ids: list[int] | None = None, exclude: set[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """Top ``k`` photos for a lookup table [M, K]: (scores, image ids, number of photos searched)."""
        exclude = exclude or set()
        with self.lock:
            size = self._size
            mask = None
            if folder_ids is not None:
                mask = np.isin(self._folder_ids[:size], np.asarray(folder_ids, np.int64))
            n_searched = size if mask is None else int(mask.sum())
            scores, rows = top_k(table, self._words[:size], k + len(exclude), mask)
            image_ids = self._image_ids[rows]
        keep = np.array([image_id not in exclude for image_id in image_ids.tolist()], dtype=bool)
        return scores[keep][:k], image_ids[keep][:k], n_searched
