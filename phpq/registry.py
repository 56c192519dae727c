"""The model registry of an index: the bundled models and imported ones, which one is active, and the
loaded models (an ONNX Runtime session each), loaded on first use and kept.

A model file is registered with its size and mtime. A bundled model that changed since (a package
upgrade, in place or in a new install location) retires the old default and its codes; any other model
file that changes under its record is refused rather than scanning old codes with new codebooks.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from phpq.db import IndexDatabase, ModelRecord
from phpq.errors import LibraryError
from phpq.locations import bundled_models
from phpq.model import ModelError, PHPQModel
from phpq.scan import N_CODEWORDS

log = logging.getLogger(__name__)

ACTIVE_MODEL_KEY = "active_model"
FILE_STAMP_KEY = "file_stamp"  # model metadata: size and mtime of the file when it was registered


class ModelRegistry:
    """The models of one index. ``on_change`` is called (with ``lock`` held) when the active model or its
    codes change under the code matrix, which must then be reloaded."""

    def __init__(
        self,
        db: IndexDatabase,
        lock: threading.RLock,
        on_change: Callable[[], None],
        prefer_cuda: bool = True,
        read_only_reason: str | None = None,
    ):
        self.db = db
        self.lock = lock
        self.on_change = on_change
        self.prefer_cuda = prefer_cuda
        self.read_only_reason = read_only_reason
        self.models_dir = db.path.parent / "models"
        self.cache_dir = db.path.parent / "cache"
        self._models: dict[str, PHPQModel] = {}

    def register_bundled(self) -> None:
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
        active = self.db.get_setting(ACTIVE_MODEL_KEY)
        with self.lock:  # registering loaded each new model: keep only the active one (the rest load on use)
            self._models = {model_id: model for model_id, model in self._models.items() if model_id == active}

    def records(self) -> list[ModelRecord]:
        return self.db.models()

    def record(self, model_id: str) -> ModelRecord:
        """The model whose id is ``model_id`` or starts with it."""
        matches = [record for record in self.db.models() if record.id.startswith(model_id)]
        if len(matches) != 1:
            raise LibraryError(f"no model {model_id!r}" if not matches else f"model id {model_id!r} is ambiguous")
        return matches[0]

    def import_file(self, path: Path) -> ModelRecord:
        """Check an exported .onnx model and copy it into the data directory (the original is untouched)."""
        path = Path(path)
        model = self._load(path)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        target = self.models_dir / f"{path.stem}-{model.info.model_id[:12]}.onnx"
        if not target.exists():
            partial = target.with_suffix(".partial")
            shutil.copyfile(path, partial)
            partial.replace(target)
        return self._register(target)

    def activate(self, model_id: str) -> ModelRecord:
        """Make another model the one searches use; its codes must be built with ``index`` (old ones stay)."""
        record = self.record(model_id)
        self.model(record.id)  # refuse a model whose file went missing before switching to it
        with self.lock:
            self.db.set_setting(ACTIVE_MODEL_KEY, record.id)
            self.on_change()
        return record

    @property
    def active_id(self) -> str:
        model_id = self.db.get_setting(ACTIVE_MODEL_KEY)
        if model_id is None:
            raise LibraryError("no model is installed: import one with `phpq models import FILE`")
        return model_id

    def model(self, model_id: str | None = None) -> PHPQModel:
        """The loaded model (the active one by default, or a unique id prefix), loaded on first use."""
        model_id = model_id or self.active_id
        loaded = self._models.get(model_id)  # the common case on every search: no model-table read
        if loaded is not None:
            return loaded
        record = self.record(model_id)
        with self.lock:
            if record.id not in self._models:
                model = self._load(record.path)
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
        if self.read_only_reason is not None:
            raise LibraryError(f"{replaced}, and this index is open read-only because {self.read_only_reason}")
        self._retire(record, self._register_loaded(record.path, model).id)
        return model

    def _retire(self, outdated: ModelRecord, replacement_id: str) -> None:
        """Drop an outdated bundled model and its codes; its replacement becomes active if it was."""
        if self.db.get_setting(ACTIVE_MODEL_KEY) == outdated.id:
            self.db.set_setting(ACTIVE_MODEL_KEY, replacement_id)
            log.warning(
                "the bundled model %s was updated (%s -> %s): run `phpq index` to encode your photos with it",
                outdated.title,
                outdated.id[:12],
                replacement_id[:12],
            )
        self.db.delete_model(outdated.id)
        with self.lock:
            self._models.pop(outdated.id, None)
            self.on_change()

    def _register(self, path: Path) -> ModelRecord:
        return self._register_loaded(path, self._load(path))

    def _register_loaded(self, path: Path, model: PHPQModel) -> ModelRecord:
        """Record a loaded model with its file's size and mtime, so a later change of the file is noticed."""
        self._models[model.info.model_id] = model
        metadata = {**model.info.metadata, FILE_STAMP_KEY: _file_stamp(path)}
        self.db.add_model(model.info.model_id, path.stem, path, metadata)
        return self.record(model.info.model_id)

    def _load(self, path: Path) -> PHPQModel:
        """Load an exported model with this index's settings; refuse one the index cannot store."""
        model = PHPQModel(path, prefer_cuda=self.prefer_cuda, cache_dir=self.cache_dir)
        if model.info.n_codewords > N_CODEWORDS:
            raise ModelError(f"{model.path} uses {model.info.n_codewords} codewords; the index stores at most 256")
        return model


def _file_stamp(path: Path) -> str:
    """Size and modification time of a model file, as recorded with the model."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"
