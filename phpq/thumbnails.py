"""Thumbnails for result grids: decoded at reduced scale, kept in a size-capped disk cache.

The cache lives in the app's data directory (never next to the photos). A thumbnail is keyed by the
photo's path, size and mtime, so an edited photo gets a new one. When the cache outgrows its cap, the
least recently used files are deleted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from PIL import Image

from phpq.imaging import load_image

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 256
DEFAULT_CAP_BYTES = 200 * 2**20


class ThumbnailCache:
    """Reduced photos for display, cached on disk as JPEG files under ``folder``."""

    def __init__(self, folder: Path, size: int = THUMBNAIL_SIZE, cap_bytes: int = DEFAULT_CAP_BYTES):
        self.folder = Path(folder)
        self.size = size
        self.cap_bytes = cap_bytes
        self._lock = threading.Lock()
        self._bytes_written = 0

    def _entry(self, photo: Path) -> Path:
        stat = photo.stat()
        key = f"{photo.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.size}"
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        return self.folder / digest[:2] / f"{digest}.jpg"

    def load(self, photo: Path) -> Image.Image:
        """The RGB thumbnail of ``photo`` (its longest side at most ``size``); raises if it cannot be read."""
        entry = self._entry(photo)
        try:
            with Image.open(entry) as cached:
                entry.touch()  # most recently used
                return cached.convert("RGB")
        except OSError:
            pass  # not cached yet (or a damaged cache file): decode the photo
        image = load_image(photo, min_side=self.size)
        image.thumbnail((self.size, self.size), Image.Resampling.BILINEAR)
        self._store(entry, image)
        return image

    def _store(self, entry: Path, image: Image.Image) -> None:
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            partial = entry.with_suffix(f".{threading.get_ident()}.partial")
            image.save(partial, "JPEG", quality=85)
            partial.replace(entry)
            with self._lock:
                self._bytes_written += entry.stat().st_size
                over = self._bytes_written > self.cap_bytes // 10
                if over:
                    self._bytes_written = 0
            if over:
                self.trim()
        except OSError as error:  # a full or read-only data directory costs the cache, not the display
            log.warning("thumbnail cache not written: %s", error)

    def trim(self) -> int:
        """Delete the least recently used thumbnails until the cache fits its cap; returns bytes freed."""
        entries = []
        for path in self.folder.glob("*/*.jpg"):
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in sorted(entries):
            if total - freed <= self.cap_bytes:
                break
            path.unlink(missing_ok=True)
            freed += size
        return freed
