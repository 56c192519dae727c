"""The photo library: the one object the command line and the window use (folders, index, search, models).

It owns the index database, the active model and the in-memory code matrix of that model, and keeps
the three consistent: every committed indexing batch is applied to the matrix, and changes written by
another process are noticed through SQLite's ``data_version`` and reloaded before the next search.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from phpq.db import EncodedImage, FolderRecord, ImageRecord, IndexDatabase, ModelRecord, PhotoSize
from phpq.descriptor import dequantize
from phpq.imaging import load_and_preprocess, preprocess
from phpq.index import (
    CancelToken,
    FolderChanges,
    IndexProgress,
    ProgressCallback,
    content_hash,
    describe_error,
    encode_pending,
    sync_folder,
)
from phpq.instance import WriterLock
from phpq.locations import bundled_models, default_database_path
from phpq.model import ModelError, PHPQModel
from phpq.pq import decode
from phpq.scan import N_CODEWORDS, set_kernel_cache_root, warm_up_in_background
from phpq.search import CodeMatrix, Query, SearchHit, SearchResult, model_query
from phpq.threadguard import guarded

log = logging.getLogger(__name__)

ACTIVE_MODEL_KEY = "active_model"
FILE_STAMP_KEY = "file_stamp"  # model metadata: size and mtime of the file when it was registered


class LibraryError(Exception):
    """A request the library cannot carry out (unknown folder, unreadable query photo, ...)."""


class ReadOnlyError(LibraryError):
    """A change was asked of an index that another instance is writing to."""


FOLDER_LIST_SUFFIX = ".folders.json"


def _folder_list_path(database: Path) -> Path:
    return database.with_name(database.name + FOLDER_LIST_SUFFIX)


def _lock_path(database: Path) -> Path:
    return database.with_name(database.name + ".lock")


def _remembered_folders(database: Path) -> list[Path]:
    """The folders of an index: from its JSON folder list, else from the (damaged) file if it reads."""
    try:
        return [Path(path) for path in json.loads(_folder_list_path(database).read_text())]
    except (OSError, ValueError):
        pass
    try:
        with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            return [Path(row[0]) for row in connection.execute("SELECT path FROM folders")]
    except sqlite3.Error:
        return []


@dataclass
class IndexReport:
    folders: int = 0
    unchanged: int = 0
    added: int = 0
    modified: int = 0
    moved: int = 0
    removed: int = 0
    encoded: int = 0
    failed: int = 0  # photos that opened but could not be decoded
    unreadable: int = 0  # files that could not be opened at all (both kinds are recorded with a reason)
    cancelled: bool = False
    seconds: float = 0.0
    problems: list[str] | None = None


@dataclass(frozen=True)
class LibraryStatus:
    database: Path
    schema_version: int
    model: ModelRecord
    provider: str
    bits: int
    folders: list[FolderRecord]
    images: int
    indexed: int
    pending: int
    errors: int
    descriptor_dim: int  # 0 for a codes-only (format 1) model
    fusion_weight: float  # the model's weight w of the code similarity (1 for codes only)
    query_expansion: int  # how many of a query's best photos join it for the second scan (0: none)

    @property
    def kind(self) -> str:
        """Which kind of search the active model gives, in words."""
        return search_kind(self.descriptor_dim, self.fusion_weight, self.query_expansion)


def search_kind(descriptor_dim: int, fusion_weight: float, query_expansion: int = 0) -> str:
    """ "codes + descriptor (fused, w=0.5, query expansion 3)" or "codes only (format 1)"."""
    if not descriptor_dim:
        return "codes only (format 1)"
    expansion = f", query expansion {query_expansion}" if query_expansion else ""
    return f"codes + descriptor (fused, w={fusion_weight:g}{expansion})"


@guarded
class Library:
    """Folders of photos indexed with PQ codes of the active model, searchable by photo."""

    def __init__(self, database: Path | None = None, prefer_cuda: bool = True):
        database = Path(database or default_database_path())
        self.writer_lock = WriterLock(_lock_path(database))
        try:
            locked = self.writer_lock.acquire()
            self.read_only_reason = None if locked else "another PHPQ Search (a window or a `phpq` command) is using it"
        except OSError as error:  # a read-only data directory: reading an existing index still works
            reason = error.strerror or str(error)
            self.read_only_reason = f"its folder {database.parent} cannot be written ({reason})"
        self.read_only = self.read_only_reason is not None
        try:
            self.db = IndexDatabase(database, read_only=self.read_only)
        except Exception:
            self.writer_lock.release()
            raise
        if self.read_only:
            log.warning("%s opened read-only: %s", database, self.read_only_reason)
        self.models_dir = self.db.path.parent / "models"
        self.cache_dir = self.db.path.parent / "cache"
        set_kernel_cache_root(self.cache_dir)
        self.prefer_cuda = prefer_cuda
        self._lock = threading.RLock()
        self._models: dict[str, PHPQModel] = {}
        self._matrix: CodeMatrix | None = None
        self._data_version = self.db.data_version()
        if not self.read_only:
            self._register_bundled_models()
            if not _folder_list_path(self.db.path).exists():  # add/remove keep it current after that
                self._save_folder_list()

    @classmethod
    def rebuild(cls, database: Path | None = None, prefer_cuda: bool = True) -> Library:
        """Set a damaged index aside and start a new one with the same folders (from the folder list
        kept next to it, or what can still be read from the damaged file). Photos are not touched;
        call ``index()`` to encode them again."""
        database = Path(database or default_database_path())
        lock = WriterLock(_lock_path(database))
        if not lock.acquire():
            raise ReadOnlyError(f"{database} is in use by another PHPQ Search; close it, then rebuild")
        try:
            folders = _remembered_folders(database)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                damaged = database.with_name(database.name + suffix)
                if damaged.exists():
                    damaged.replace(damaged.with_name(f"{damaged.name}.damaged-{stamp}"))
        finally:
            lock.release()
        library = cls(database, prefer_cuda=prefer_cuda)
        for folder in folders:
            if folder.is_dir():
                library.add_folder(folder)
            else:
                log.warning("folder %s of the old index is gone; not added", folder)
        return library

    def _save_folder_list(self) -> None:
        """Keep the folder list in a small JSON file next to the index, for ``rebuild``."""
        target = _folder_list_path(self.db.path)
        partial = target.with_suffix(".partial")
        try:
            partial.write_text(json.dumps([str(folder.path) for folder in self.db.folders()], indent=1))
            partial.replace(target)
        except OSError as error:
            log.warning("folder list not saved: %s", error)

    def _require_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError(
                f"this index is open read-only because {self.read_only_reason}: it can search but not change it"
            )

    def close(self) -> None:
        self.db.close()
        self.writer_lock.release()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Models ---------------------------------------------------------------------------------------

    def _register_bundled_models(self) -> None:
        """Register the package's models. A bundled model that changed since (an upgrade, in place or in
        a new install location) replaces the old default: its codes go and it takes the old one's place."""
        for path in bundled_models():
            try:
                known = {record.path: record for record in self.db.models()}
                if path not in known:
                    current = self._register(path)
                elif known[path].metadata.get(FILE_STAMP_KEY) != _file_stamp(path):
                    current = self._register(path)  # a new model here is retired against below
                else:
                    current = known[path]
            except (ModelError, LibraryError) as error:
                log.error("bundled model %s cannot be used: %s", path, error)
                continue
            for record in self.db.models():  # imported models are named with their id, so never match
                if record.path.name == path.name and record.id != current.id:
                    self._retire(record, current.id)
        if self.db.get_setting(ACTIVE_MODEL_KEY) is None and self.db.models():
            self.db.set_setting(ACTIVE_MODEL_KEY, self.db.models()[0].id)

    def _retire(self, outdated: ModelRecord, replacement_id: str) -> None:
        """Drop an outdated default model and its codes; its replacement becomes active if it was."""
        if self.db.get_setting(ACTIVE_MODEL_KEY) == outdated.id:
            self.db.set_setting(ACTIVE_MODEL_KEY, replacement_id)
            log.warning(
                "the default model was updated (%s -> %s): run `phpq index` to encode your photos with it",
                outdated.id[:12],
                replacement_id[:12],
            )
        self.db.delete_model(outdated.id)
        with self._lock:
            self._models.pop(outdated.id, None)
            self._matrix = None

    def _register(self, path: Path) -> ModelRecord:
        return self._register_loaded(path, self._load_model(path))

    def _register_loaded(self, path: Path, model: PHPQModel) -> ModelRecord:
        """Record a loaded model with its file's size and mtime, so a later change of the file is noticed."""
        self._models[model.info.model_id] = model
        metadata = {**model.info.metadata, FILE_STAMP_KEY: _file_stamp(path)}
        self.db.add_model(model.info.model_id, path.stem, path, metadata)
        return self.model_record(model.info.model_id)

    def _load_model(self, path: Path) -> PHPQModel:
        """Load an exported model with this library's settings; refuse one the index cannot store."""
        model = PHPQModel(path, prefer_cuda=self.prefer_cuda, cache_dir=self.cache_dir)
        if model.info.n_codewords > N_CODEWORDS:
            raise ModelError(f"{model.path} uses {model.info.n_codewords} codewords; the index stores at most 256")
        return model

    def models(self) -> list[ModelRecord]:
        return self.db.models()

    def model_record(self, model_id: str) -> ModelRecord:
        """The model whose id is ``model_id`` or starts with it."""
        matches = [record for record in self.db.models() if record.id.startswith(model_id)]
        if len(matches) != 1:
            raise LibraryError(f"no model {model_id!r}" if not matches else f"model id {model_id!r} is ambiguous")
        return matches[0]

    def import_model(self, path: Path) -> ModelRecord:
        """Check an exported .onnx model and copy it into the data directory (the original is untouched)."""
        self._require_writable()
        path = Path(path)
        model = self._load_model(path)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        target = self.models_dir / f"{path.stem}-{model.info.model_id[:12]}.onnx"
        if not target.exists():
            partial = target.with_suffix(".partial")
            shutil.copyfile(path, partial)
            partial.replace(target)
        return self._register(target)

    def activate_model(self, model_id: str) -> ModelRecord:
        """Make another model the one searches use; its codes must be built with ``index`` (old ones stay)."""
        self._require_writable()
        record = self.model_record(model_id)
        self.model_for(record.id)  # refuse a model whose file went missing before switching to it
        with self._lock:
            self.db.set_setting(ACTIVE_MODEL_KEY, record.id)
            self._matrix = None
        return record

    @property
    def active_model_id(self) -> str:
        model_id = self.db.get_setting(ACTIVE_MODEL_KEY)
        if model_id is None:
            raise LibraryError("no model is installed: import one with `phpq models import FILE`")
        return model_id

    def model_for(self, model_id: str | None = None) -> PHPQModel:
        """The loaded model (the active one by default, or a unique id prefix), loaded on first use."""
        model_id = model_id or self.active_model_id
        loaded = self._models.get(model_id)  # the common case on every search: no model-table read
        if loaded is not None:
            return loaded
        record = self.model_record(model_id)
        with self._lock:
            if record.id not in self._models:
                model = self._load_model(record.path)
                if model.info.model_id != record.id:
                    return self._take_over_replaced_model(record, model)
                self._models[record.id] = model
            return self._models[record.id]

    def _take_over_replaced_model(self, record: ModelRecord, model: PHPQModel) -> PHPQModel:
        """A model file now holds another model. For a bundled model that is a package upgrade, and the
        new model replaces the old one. Any other model file must not change under the index."""
        replaced = f"{record.path} no longer holds model {record.id[:12]} but {model.info.model_id[:12]}"
        if record.path not in bundled_models():
            raise LibraryError(f"{replaced}: import the new file with `phpq models import`")
        if self.read_only:
            raise LibraryError(f"{replaced}, and this index is open read-only because {self.read_only_reason}")
        self._retire(record, self._register_loaded(record.path, model).id)
        return model

    # Folders --------------------------------------------------------------------------------------

    def folders(self) -> list[FolderRecord]:
        return self.db.folders()

    def add_folder(self, path: Path) -> FolderRecord:
        """Register a folder. A folder inside an indexed one is refused (it is already searched); a
        folder that holds indexed ones takes them over, with their photos and codes."""
        self._require_writable()
        folder = Path(path).expanduser().resolve()
        if not folder.is_dir():
            raise LibraryError(f"not a folder: {path}")
        existing = self.db.folders()
        for record in existing:
            if record.path != folder and folder.is_relative_to(record.path):
                raise LibraryError(f"{folder} is already indexed as part of {record.path}")
        children = [record.id for record in existing if record.path != folder and record.path.is_relative_to(folder)]
        folder_id = self.db.add_folder(folder, absorb=children)
        self._save_folder_list()
        with self._lock:
            self._matrix = None  # folder ids of absorbed photos changed; reload on the next search
        return next(record for record in self.db.folders() if record.id == folder_id)

    def folder(self, path: Path) -> FolderRecord:
        """The indexed folder at ``path`` (compared after resolving it)."""
        wanted = Path(path).expanduser().resolve()
        for record in self.db.folders():
            if record.path == wanted:
                return record
        raise LibraryError(f"not an indexed folder: {path}")

    def remove_folder(self, path: Path) -> FolderRecord:
        """Forget a folder and its codes; the photos on disk are not touched."""
        self._require_writable()
        record = self.folder(path)
        self.db.remove_folder(record.id)
        self._save_folder_list()
        with self._lock:
            if self._matrix is not None:
                self._matrix.remove_folder(record.id)
        return record

    # Indexing -------------------------------------------------------------------------------------

    def index(
        self,
        folders: list[Path] | None = None,
        model_id: str | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        batch_size: int = 32,
    ) -> IndexReport:
        """Bring the index of these folders (all by default) up to date for a model (the active one)."""
        self._require_writable()
        start = time.perf_counter()
        model_id = self.model_record(model_id or self.active_model_id).id
        records = self.db.folders() if folders is None else [self.folder(path) for path in folders]
        report = IndexReport(folders=len(records), problems=[])
        pending: list[tuple[int, Path]] = []
        moved: set[int] = set()
        vanished: list[int] = []
        for number, record in enumerate(records):
            if progress is not None:
                progress(IndexProgress("scanning", done=number, total=len(records), folder=record.path))
            if not record.path.is_dir():
                report.problems.append(f"{record.path}: folder not found (unplugged drive?); its photos are kept")
                continue
            changes = sync_folder(self.db, record.id, record.path, model_id)
            report.unchanged += changes.unchanged
            report.unreadable += changes.unreadable
            report.added += changes.added
            report.modified += changes.modified
            report.moved += len(changes.moved)
            report.problems.extend(changes.problems)
            pending.extend(changes.pending)
            moved.update(changes.moved)
            vanished.extend(changes.vanished)
            self._apply_to_matrix(lambda matrix, c=changes: _apply_changes(matrix, c))
            if cancel is not None and cancel.cancelled:
                break
        removed = [image_id for image_id in vanished if image_id not in moved]
        self.db.delete_images(removed)
        self._apply_to_matrix(lambda matrix: matrix.remove(removed))
        report.removed = len(removed)

        def store(results: list[EncodedImage]) -> None:
            self.db.store_encoded(model_id, results)
            if model_id == self.active_model_id:
                self._apply_to_matrix(lambda matrix: _add_codes(matrix, self.db, results))

        encoding = IndexProgress("encoding")
        if pending and not (cancel is not None and cancel.cancelled):
            encoding = encode_pending(self.model_for(model_id), pending, store, progress, cancel, batch_size)
        report.encoded = encoding.done - encoding.failed
        report.failed = encoding.failed
        report.cancelled = cancel is not None and cancel.cancelled
        report.seconds = time.perf_counter() - start
        if progress is not None:
            progress(IndexProgress("done", encoding.done, len(pending), encoding.failed, report.seconds))
        return report

    def _apply_to_matrix(self, update: Callable[[CodeMatrix], None]) -> None:
        """Apply a change to the in-memory matrix if it is loaded (otherwise the next load sees it)."""
        with self._lock:
            if self._matrix is not None:
                update(self._matrix)

    # Search ---------------------------------------------------------------------------------------

    def matrix(self) -> CodeMatrix:
        """The active model's code matrix, loaded in one query, reloaded when another process wrote."""
        with self._lock:
            version = self.db.data_version()
            model_id = self.active_model_id
            stale = self._matrix is None or self._matrix.model_id != model_id or version != self._data_version
            if stale:
                info = self.model_for(model_id).info
                self._matrix = CodeMatrix.load(self.db, model_id, info.n_subspaces, info.descriptor_dim)
                self._data_version = version
            return self._matrix

    def prepare_search(self) -> None:
        """Make the first search as fast as the next ones: load the model and run it once, load the
        code matrix, then start the scan kernel's warm-up (about a second) in the background."""
        model = self.model_for()
        model.encode(np.zeros((1, 3, model.info.input_size, model.info.input_size), np.float32))
        self.matrix()
        warm_up_in_background()

    def search(
        self, query: Path, top_k: int = 20, folders: list[Path] | None = None, weight: float | None = None
    ) -> SearchResult:
        """Photos that look most like the photo at ``query`` (it need not be indexed; if it is, it is
        left out of its own results). Indexed byte-identical copies of it come first: photos of one
        species can share a code, and so a score, and a copy should not hide among them.

        ``weight`` overrides the model's weight w of the code similarity (format-2 models only)."""
        clock = time.perf_counter()
        model = self.model_for()
        try:
            image = load_and_preprocess(Path(query), model.info.preprocessing)
        except Exception as error:  # any unreadable query gets one readable message
            raise LibraryError(f"cannot read the query photo {query}: {describe_error(error)}") from error
        indexed = self.db.image_by_path(Path(query).resolve(), model.info.model_id)
        exclude = {indexed.id} if indexed is not None else set()
        copies = [copy for copy in self._indexed_copies(Path(query), model.info.model_id) if copy.id not in exclude]
        timings = {"decode": _lap(clock)}
        query_vectors = self._query(model, image, weight, timings)
        return self._search_table(query_vectors, top_k, folders, exclude, timings, copies)

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

    def search_image(
        self, image: Image.Image, top_k: int = 20, folders: list[Path] | None = None, weight: float | None = None
    ) -> SearchResult:
        """Photos that look most like an image already in memory (a paste from the clipboard)."""
        clock = time.perf_counter()
        model = self.model_for()
        array = preprocess(image.convert("RGB"), model.info.preprocessing)
        timings = {"decode": _lap(clock)}
        return self._search_table(self._query(model, array, weight, timings), top_k, folders, set(), timings)

    def _query(self, model: PHPQModel, image: np.ndarray, weight: float | None, timings: dict[str, float]) -> Query:
        """Encode a preprocessed query image into the query the matrix scores (timed as "encode")."""
        clock = time.perf_counter()
        encoding = model.encode(image[None])
        timings["encode"] = _lap(clock)
        descriptor = None if encoding.descriptors is None else encoding.descriptors[0]
        return self._make_query(model, encoding.subvectors[0], descriptor, weight)

    @staticmethod
    def _make_query(
        model: PHPQModel, subvectors: np.ndarray, descriptor: np.ndarray | None, weight: float | None
    ) -> Query:
        if weight is not None and not model.info.has_descriptor:
            log.warning("model %s gives codes only (format 1): the weight is not used", model.info.model_id[:12])
        try:
            return model_query(model, subvectors, descriptor, weight)
        except ValueError as error:
            raise LibraryError(str(error)) from error

    def search_indexed(
        self, image_id: int, top_k: int = 20, folders: list[Path] | None = None, weight: float | None = None
    ) -> SearchResult:
        """Photos that look like an indexed photo: its file re-encoded, or, if it is gone, its stored code
        (decoded to sub-vectors) and stored descriptor."""
        path = self.db.paths([image_id]).get(image_id)
        if path is None:
            raise LibraryError(f"no indexed photo with id {image_id}")
        if path.exists():
            return self.search(path, top_k, folders, weight)
        model = self.model_for()
        code = self.db.code_of(image_id, model.info.model_id)
        if code is None:
            raise LibraryError(f"{path} is gone and has no code for the active model")
        subvectors = decode(np.frombuffer(code, np.uint8)[None], model.codebooks)[0]
        stored = self.matrix().descriptors_from_blobs([self.db.descriptor_of(image_id, model.info.model_id)])
        descriptor = None if stored is None else dequantize(*stored)[0]  # a missing one: zeros, as in the scan
        query = self._make_query(model, subvectors, descriptor, weight)
        return self._search_table(query, top_k, folders, {image_id}, {})

    def _search_table(
        self,
        query: Query,
        top_k: int,
        folders: list[Path] | None,
        exclude: set[int],
        timings: dict[str, float],
        copies: list[ImageRecord] | None = None,
    ) -> SearchResult:
        """Scan the matrix with a query; ``copies`` (within the folders) go first, scored the same way."""
        clock = time.perf_counter()
        folder_ids = None if folders is None else [self.folder(path).id for path in folders]
        pinned = [copy.id for copy in copies or [] if folder_ids is None or copy.folder_id in folder_ids]
        scores, image_ids, n_searched = self.matrix().search(query, top_k, folder_ids, exclude, pinned)
        timings["scan"] = _lap(clock)
        clock = time.perf_counter()
        paths = self.db.paths(image_ids.tolist())
        hits = [
            SearchHit(image_id, paths[image_id], score)
            for image_id, score in zip(image_ids.tolist(), scores.tolist(), strict=True)
            if image_id in paths
        ]
        timings["fetch"] = _lap(clock)
        return SearchResult(hits, n_searched, timings)

    def photo_sizes(self, image_ids: list[int]) -> dict[int, PhotoSize]:
        """Pixel and file size of indexed photos (for the window's tooltips)."""
        return self.db.photo_sizes(image_ids)

    def unreadable(self, folder: Path | None = None, limit: int | None = None) -> list[tuple[Path, str]]:
        """Files that could not be read, with the reason (in one folder, or in all)."""
        folder_id = None if folder is None else self.folder(folder).id
        return self.db.errors(folder_id, limit)

    def counts(self, model_id: str | None = None) -> dict[str, int]:
        """Photos known, indexed for the model (the active one), still to index, and unreadable."""
        return self.db.counts(self.model_record(model_id or self.active_model_id).id)

    # Status ---------------------------------------------------------------------------------------

    def status(self) -> LibraryStatus:
        model = self.model_for()
        counts = self.db.counts(model.info.model_id)
        return LibraryStatus(
            database=self.db.path,
            schema_version=self.db.schema_version,
            model=self.model_record(model.info.model_id),
            provider=model.provider,
            bits=model.info.bits,
            folders=self.db.folders(),
            images=counts["images"],
            indexed=counts["indexed"],
            pending=counts["pending"],
            errors=counts["errors"],
            descriptor_dim=model.info.descriptor_dim,
            fusion_weight=model.info.fusion_weight,
            query_expansion=model.info.query_expansion,
        )


def _apply_changes(matrix: CodeMatrix, changes: FolderChanges) -> None:
    """Codes dropped for changed files, folder ids updated for moved ones."""
    matrix.remove(changes.invalidated)
    for image_id, folder_id in changes.moved.items():
        matrix.move(image_id, folder_id)


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


def _file_stamp(path: Path) -> str:
    """Size and modification time of a model file, as recorded with the model."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _lap(start: float) -> float:
    return (time.perf_counter() - start) * 1000
