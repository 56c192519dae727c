"""Where the app keeps its data (index database, imported models) and where the bundled models are."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from platformdirs import user_data_dir

APP_NAME = "phpq-search"
DATA_DIR_VARIABLE = "PHPQ_DATA_DIR"
DATABASE_NAME = "index.sqlite3"


def data_dir() -> Path:
    """The user's data directory for PHPQ Search (``$PHPQ_DATA_DIR`` overrides it)."""
    override = os.environ.get(DATA_DIR_VARIABLE)
    return Path(override) if override else Path(user_data_dir(APP_NAME, appauthor=False))


def default_database_path() -> Path:
    return data_dir() / DATABASE_NAME


def default_cache_dir() -> Path:
    """Caches of third-party libraries (ONNX Runtime, numba) when no library has set its own."""
    return data_dir() / "cache"


DEFAULT_MODEL_NAME = "phpq-cub200-lite0-64bit.onnx"  # the bundled model a new index starts with


def bundled_models() -> list[Path]:
    """The .onnx models shipped in the package (assets/models), the default one first."""
    folder = resources.files("phpq_assets") / "models"
    paths = [Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".onnx")]
    return sorted(paths, key=lambda path: (path.name != DEFAULT_MODEL_NAME, path.name))
