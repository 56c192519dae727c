"""The photo library: the one object the command line and the window use (folders, index, search, models).

A facade over the parts, each in its own module: the index database (``phpq.db``), the writer lock
and folder list beside it (``phpq.indexfiles``), the model registry (``phpq.registry``), indexing
(``phpq.index``) and search over the in-memory code matrix (``phpq.searcher``). It keeps them
consistent: every committed indexing batch is applied to the matrix, and the matrix is reloaded when
the active model changes or another process writes to the index. Every public method is
``@guarded``: a front end can forbid library work on its GUI thread.
"""

from __future__ import annotations

import logging
import threading
from functools import partial
from pathlib import Path

from PIL import Image

from phpq import indexfiles
from phpq.db import FolderRecord, IndexDatabase, ModelRecord, PhotoSize
from phpq.errors import LibraryError, ReadOnlyError
from phpq.fusion import SearchSettings, SearchSteps
from phpq.index import CancelToken, IndexReport, ProgressCallback, index_folders
from phpq.labels import FolderLabeller, apply_folder_labels, label_paths, restore_labels
from phpq.locations import default_database_path
from phpq.model import PHPQModel
from phpq.registry import ModelRegistry
from phpq.scan import set_kernel_cache_root
from phpq.search import CodeMatrix, SearchResult
from phpq.searcher import Searcher
from phpq.species import IDENTIFY_DEPTH, Identification, identify, vote_weight
from phpq.status import LibraryStatus
from phpq.threadguard import guarded

__all__ = ["IndexReport", "Library", "LibraryError", "LibraryStatus", "ReadOnlyError", "SearchSettings"]

log = logging.getLogger(__name__)


@guarded
class Library:
    """Folders of photos indexed with PQ codes of the active model, searchable by photo."""

    def __init__(self, database: Path | None = None, prefer_cuda: bool = True):
        database = Path(database or default_database_path())
        self.writer_lock, self.read_only_reason = indexfiles.take_writer_lock(database)
        self.read_only = self.read_only_reason is not None
        try:
            self.db = IndexDatabase(database, read_only=self.read_only)
        except Exception:
            self.writer_lock.release()
            raise
        if self.read_only:
            log.warning("%s opened read-only: %s", database, self.read_only_reason)
        lock = threading.RLock()  # one lock for the loaded models and the matrix built with them
        self._registry = ModelRegistry(self.db, lock, self._models_changed, prefer_cuda, self.read_only_reason)
        self._searcher = Searcher(self.db, self._registry, lock)
        self.models_dir = self._registry.models_dir
        set_kernel_cache_root(self._registry.cache_dir)
        if not self.read_only:
            self._registry.register_bundled()
            if not indexfiles.has_folder_list(self.db.path):  # add/remove keep it current after that
                self._save_folder_list()

    @classmethod
    def rebuild(cls, database: Path | None = None, prefer_cuda: bool = True) -> Library:
        """Set a damaged index aside and start a new one with the same folders (from the folder list
        kept next to it, or what can still be read from the damaged file) and the species labels that
        can still be read. Photos are not touched; call ``index()`` to encode them again."""
        database = Path(database or default_database_path())
        labels = IndexDatabase.salvage_labels(database)  # what can still be read, before it is set aside
        folders = indexfiles.set_aside(database)
        library = cls(database, prefer_cuda=prefer_cuda)
        restore_labels(library.db, labels)
        for folder, species_from_folders in folders:
            if folder.is_dir():
                library.add_folder(folder, species_from_folders)
            else:
                log.warning("folder %s of the old index is gone; not added", folder)
        return library

    def _models_changed(self) -> None:
        self._searcher.invalidate()

    def _save_folder_list(self) -> None:
        indexfiles.save_folder_list(self.db.path, self.db.folders())

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

    def models(self) -> list[ModelRecord]:
        return self._registry.records()

    def model_record(self, model_id: str) -> ModelRecord:
        """The model whose id is ``model_id`` or starts with it."""
        return self._registry.record(model_id)

    def import_model(self, path: Path) -> ModelRecord:
        """Check an exported .onnx model and copy it into the data directory (the original is untouched)."""
        self._require_writable()
        return self._registry.import_file(path)

    def activate_model(self, model_id: str) -> ModelRecord:
        """Make another model the one searches use; its codes must be built with ``index`` (old ones stay)."""
        self._require_writable()
        return self._registry.activate(model_id)

    @property
    def active_model_id(self) -> str:
        return self._registry.active_id

    def model_for(self, model_id: str | None = None) -> PHPQModel:
        """The loaded model (the active one by default, or a unique id prefix), loaded on first use."""
        return self._registry.model(model_id)

    # Folders --------------------------------------------------------------------------------------

    def folders(self) -> list[FolderRecord]:
        return self.db.folders()

    def add_folder(self, path: Path, species_from_folders: bool = False) -> FolderRecord:
        """Register a folder. A folder inside an indexed one is refused (it is already searched); a
        folder that holds indexed ones takes them over, with their photos and codes. With
        ``species_from_folders`` (kept for later scans) each photo's parent folder name is its species."""
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
        if species_from_folders:
            self.db.set_species_from_folders(folder_id, True)
        self._save_folder_list()
        self._searcher.invalidate()  # folder ids of absorbed photos changed; reload on the next search
        record = next(record for record in self.db.folders() if record.id == folder_id)
        apply_folder_labels(self.db, [record])
        return record

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
        self._searcher.folder_removed(record.id)
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
        model_id = self._registry.record(model_id or self._registry.active_id).id
        records = self.db.folders() if folders is None else [self.folder(path) for path in folders]
        load_model = partial(self._registry.model, model_id)  # loaded only if photos need codes
        listener = FolderLabeller(self.db, records, self._searcher)  # species folders labelled once synced
        return index_folders(self.db, records, model_id, load_model, listener, progress, cancel, batch_size)

    # Search ---------------------------------------------------------------------------------------

    def matrix(self) -> CodeMatrix:
        """The active model's code matrix, loaded in one query, reloaded when another process wrote."""
        return self._searcher.matrix()

    def prepare_search(self) -> None:
        """Make the first search as fast as the next ones: load the model and run it once, load the
        code matrix, then start the scan kernel's warm-up (about a second) in the background."""
        self._searcher.prepare()

    def search(
        self,
        query: Path,
        top_k: int = 20,
        folders: list[Path] | None = None,
        weight: float | None = None,
        steps: SearchSteps | None = None,
    ) -> SearchResult:
        """Photos that look most like the photo at ``query`` (it need not be indexed; if it is, it is
        left out of its own results). Indexed byte-identical copies of it come first: photos of one
        species can share a code, and so a score, and a copy should not hide among them.

        ``weight`` overrides the model's weight w of the code similarity, ``steps`` its steps after the
        first scan (``phpq.ranking``; format-2 models only)."""
        return self._searcher.search_file(Path(query), top_k, self._folder_ids(folders), weight, steps)

    def search_image(
        self,
        image: Image.Image,
        top_k: int = 20,
        folders: list[Path] | None = None,
        weight: float | None = None,
        steps: SearchSteps | None = None,
    ) -> SearchResult:
        """Photos that look most like an image already in memory (a paste from the clipboard)."""
        return self._searcher.search_image(image, top_k, self._folder_ids(folders), weight, steps)

    def identify(self, query: Path) -> Identification:
        """The species of the photo at ``query``: the label vote of its nearest labelled photos (its own
        label and its copies' never count) and the model's suggestion, when it has class prototypes."""
        info = self._registry.model().info
        return identify(self.search(query, top_k=IDENTIFY_DEPTH, weight=vote_weight(info)), info)

    def identify_image(self, image: Image.Image) -> Identification:
        """The species of an image already in memory, as ``identify``."""
        info = self._registry.model().info
        return identify(self.search_image(image, top_k=IDENTIFY_DEPTH, weight=vote_weight(info)), info)

    def label(self, paths: list[Path], species: str | None) -> int:
        """Give these photos (a folder: every photo under it) a species label, or clear it (None; a
        folder name does not come back); returns the photos labelled. The photos are not touched."""
        self._require_writable()
        return label_paths(self.db, paths, species, self._registry.active_id)

    def species(self) -> dict[str, int]:
        """Each species label with its number of photos, most first."""
        return self.db.species_counts()

    def _folder_ids(self, folders: list[Path] | None) -> list[int] | None:
        return None if folders is None else [self.folder(path).id for path in folders]

    def photo_sizes(self, image_ids: list[int]) -> dict[int, PhotoSize]:
        """Pixel and file size of indexed photos (for the window's tooltips)."""
        return self.db.photo_sizes(image_ids)

    def unreadable(self, folder: Path | None = None, limit: int | None = None) -> list[tuple[Path, str]]:
        """Files that could not be read, with the reason (in one folder, or in all)."""
        folder_id = None if folder is None else self.folder(folder).id
        return self.db.errors(folder_id, limit)

    def counts(self, model_id: str | None = None) -> dict[str, int]:
        """Photos known, indexed for the model (the active one), still to index, and unreadable."""
        return self.db.counts(self._registry.record(model_id or self._registry.active_id).id)

    # Status ---------------------------------------------------------------------------------------

    def status(self) -> LibraryStatus:
        model = self._registry.model()
        counts = self.db.counts(model.info.model_id)
        return LibraryStatus(
            database=self.db.path,
            schema_version=self.db.schema_version,
            model=self._registry.record(model.info.model_id),
            provider=model.provider,
            bits=model.info.bits,
            folders=self.db.folders(),
            images=counts["images"],
            indexed=counts["indexed"],
            pending=counts["pending"],
            errors=counts["errors"],
            search=model.info.search,
            zoom=model.info.zoom,
        )
