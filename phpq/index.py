"""Indexing: walk folders, detect what changed, decode in a thread pool and encode in batches.

Change detection: a file whose size and mtime are unchanged is skipped. A new path whose content hash
(size + first and last 64 KiB) matches a photo whose file is gone is a rename or a move, and keeps its
row and codes. A changed file is re-encoded, a vanished one is dropped. Results are committed one
batch at a time, so an interrupted run keeps its work and the next run carries on from there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from phpq.db import EncodedImage, FolderRecord, ImageRecord, IndexDatabase
from phpq.descriptor import to_blobs
from phpq.imaging import DecodedPhoto, Preprocessing, decode_for_network, is_image_name
from phpq.model import PHPQModel, photo_source

log = logging.getLogger(__name__)

HASH_CHUNK = 64 * 1024


class CancelToken:
    """Set from any thread to stop an indexing run after the batch in progress is committed."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


@dataclass
class IndexProgress:
    """What an indexing run has done so far; passed to the progress callback when encoding starts and
    after every batch."""

    phase: str  # "scanning", "encoding" or "done"
    done: int = 0  # photos encoded (or failed) in this run
    total: int = 0  # photos this run has to encode
    failed: int = 0
    elapsed: float = 0.0
    folder: Path | None = None

    @property
    def photos_per_second(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.photos_per_second
        return (self.total - self.done) / rate if rate > 0 else None


ProgressCallback = Callable[[IndexProgress], None]


@dataclass
class FileState:
    size: int
    mtime_ns: int
    error: str | None = None  # why the file cannot be read, when it cannot


# The hash of a file that could not be read: it never matches, and the file is tried again next run.
UNREAD = ""


@dataclass
class FolderChanges:
    """The outcome of comparing one folder on disk with the database (written, except deletions)."""

    folder_id: int
    unchanged: int = 0
    unreadable: int = 0  # files that could not even be opened (recorded with their reason)
    added: int = 0
    modified: int = 0
    moved: dict[int, int] = field(default_factory=dict)  # image id -> new folder id
    vanished: list[int] = field(default_factory=list)  # gone from disk; deleted unless moved by another folder
    invalidated: list[int] = field(default_factory=list)  # image ids whose content changed
    pending: list[tuple[int, Path]] = field(default_factory=list)  # (image id, path) to encode
    problems: list[str] = field(default_factory=list)  # unreadable directories and files


@dataclass
class IndexReport:
    """What one indexing run did, over all its folders."""

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
    problems: list[str] = field(default_factory=list)

    def count(self, changes: FolderChanges) -> None:
        """Add one folder's changes to the counts."""
        self.unchanged += changes.unchanged
        self.unreadable += changes.unreadable
        self.added += changes.added
        self.modified += changes.modified
        self.moved += len(changes.moved)


class IndexListener(Protocol):
    """Told of every change an indexing run commits (the in-memory code matrix follows them)."""

    def folder_synced(self, changes: FolderChanges) -> None: ...

    def images_removed(self, image_ids: list[int]) -> None: ...

    def encoded_stored(self, model_id: str, results: list[EncodedImage]) -> None: ...


def index_folders(
    db: IndexDatabase,
    folders: list[FolderRecord],
    model_id: str,
    load_model: Callable[[], PHPQModel],
    listener: IndexListener,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    batch_size: int = 32,
) -> IndexReport:
    """Bring the index of these folders up to date for a model: sync each folder with the disk, drop the
    photos that vanished (and were not moved into another folder), then encode what needs a code.
    ``load_model`` is called only when something needs encoding."""
    start = time.perf_counter()
    report = IndexReport(folders=len(folders))
    pending, vanished = _sync_folders(db, folders, model_id, listener, report, progress, cancel)
    db.delete_images(vanished)
    listener.images_removed(vanished)
    report.removed = len(vanished)

    def store(results: list[EncodedImage]) -> None:
        db.store_encoded(model_id, results)
        listener.encoded_stored(model_id, results)

    encoding = IndexProgress("encoding")
    if pending and not (cancel is not None and cancel.cancelled):
        encoding = encode_pending(load_model(), pending, store, progress, cancel, batch_size)
    report.encoded = encoding.done - encoding.failed
    report.failed = encoding.failed
    report.cancelled = cancel is not None and cancel.cancelled
    report.seconds = time.perf_counter() - start
    if progress is not None:
        progress(IndexProgress("done", encoding.done, len(pending), encoding.failed, report.seconds))
    return report


def _sync_folders(
    db: IndexDatabase,
    folders: list[FolderRecord],
    model_id: str,
    listener: IndexListener,
    report: IndexReport,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> tuple[list[tuple[int, Path]], list[int]]:
    """Sync folder after folder (a missing one is reported and keeps its photos) until cancelled;
    returns the photos to encode and the ids of those gone from disk and not moved elsewhere."""
    problems = report.problems
    pending: list[tuple[int, Path]] = []
    moved: set[int] = set()
    vanished: list[int] = []
    for number, record in enumerate(folders):
        if progress is not None:
            progress(IndexProgress("scanning", done=number, total=len(folders), folder=record.path))
        if not record.path.is_dir():
            problems.append(f"{record.path}: folder not found (unplugged drive?); its photos are kept")
            continue
        changes = sync_folder(db, record.id, record.path, model_id)
        report.count(changes)
        problems.extend(changes.problems)
        pending.extend(changes.pending)
        moved.update(changes.moved)
        vanished.extend(changes.vanished)
        listener.folder_synced(changes)
        if cancel is not None and cancel.cancelled:
            break
    return pending, [image_id for image_id in vanished if image_id not in moved]


def content_hash(path: Path, size: int) -> str:
    """A partial content hash: the size plus the first and last 64 KiB (fast on large photos)."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with path.open("rb") as handle:
        digest.update(handle.read(HASH_CHUNK))
        if size > 2 * HASH_CHUNK:
            handle.seek(-HASH_CHUNK, os.SEEK_END)
            digest.update(handle.read(HASH_CHUNK))
        elif size > HASH_CHUNK:
            digest.update(handle.read())
    return digest.hexdigest()


def walk_photos(folder: Path, problems: list[str]) -> Iterator[tuple[str, FileState]]:
    """Paths (as strings: folders can be large) of the photo files under ``folder``; recursive, hidden
    entries and symlinked directories skipped (so link loops cannot trap the walk).

    A photo whose file information cannot be read, or a link to nowhere, is yielded with ``error``
    set, so that it is recorded with its reason. Folders that cannot be listed and names that are not
    valid UTF-8 go to ``problems``.
    """
    stack = [folder]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as error:
            problems.append(f"{directory}: cannot list folder ({error.strerror or error})")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                entry.path.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(f"{entry.path!r}: the name is not valid UTF-8; rename it to index it")
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif not is_image_name(entry.name):
                    continue
                elif entry.is_file():
                    stat = entry.stat()
                    yield entry.path, FileState(stat.st_size, stat.st_mtime_ns)
                elif entry.is_symlink():
                    yield entry.path, FileState(0, 0, "broken link: its target is missing or loops back")
            except OSError as error:
                yield entry.path, FileState(0, 0, f"cannot read file information: {error.strerror or error}")


def sync_folder(db: IndexDatabase, folder_id: int, folder: Path, model_id: str) -> FolderChanges:
    """Bring one folder's rows up to date with the disk; returns what changed and what needs encoding.

    Files are hashed before the write transaction, so searches are not held up while a large folder
    is read. A file that cannot be read gets a row with its reason (and an empty hash, so it is tried
    again on every run until it can be read).
    """
    changes = FolderChanges(folder_id)
    on_disk = dict(walk_photos(folder, changes.problems))
    known = db.images_in_folder(folder_id, model_id)
    digests: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for path, state in sorted(on_disk.items()):
        record = known.get(path)
        if state.error is not None:
            unreadable[path] = state.error
        elif record is None or record.hash == UNREAD or (record.size, record.mtime_ns) != (state.size, state.mtime_ns):
            try:
                digests[path] = content_hash(Path(path), state.size)
            except OSError as error:
                unreadable[path] = describe_error(error)
    vanished = [record for path, record in known.items() if path not in on_disk]
    vanished_by_hash = {(record.hash, record.size): record for record in vanished if record.hash != UNREAD}
    with db.transaction():
        for path, state in sorted(on_disk.items()):
            record = known.get(path)
            if path in unreadable:
                changes.unreadable += 1
                if record is None:
                    db.insert_image(folder_id, path, state.size, state.mtime_ns, UNREAD, unreadable[path])
                else:
                    db.update_file(record.id, state.size, state.mtime_ns, UNREAD, True, unreadable[path])
                    changes.invalidated.append(record.id)
            elif record is not None and path not in digests:
                changes.unchanged += 1
                if not record.has_code and record.error is None:
                    changes.pending.append((record.id, Path(path)))
            elif record is not None:
                content_changed = digests[path] != record.hash
                db.update_file(record.id, state.size, state.mtime_ns, digests[path], content_changed)
                if content_changed:
                    changes.modified += 1
                    changes.invalidated.append(record.id)
                else:
                    changes.unchanged += 1
                if content_changed or not record.has_code:  # a touched file may still lack this model's code
                    changes.pending.append((record.id, Path(path)))
            else:
                _add_file(db, changes, folder_id, path, state, digests[path], vanished_by_hash, model_id)
        changes.vanished = [record.id for record in vanished if record.id not in changes.moved]
    db.mark_scanned(folder_id)
    return changes


def _add_file(
    db: IndexDatabase,
    changes: FolderChanges,
    folder_id: int,
    path: str,
    state: FileState,
    digest: str,
    vanished_by_hash: dict[tuple[str, int], ImageRecord],
    model_id: str,
) -> None:
    source = vanished_by_hash.pop((digest, state.size), None) or _moved_from_elsewhere(db, digest, state, model_id)
    if source is not None:
        db.move_image(source.id, folder_id, path, state.mtime_ns)
        changes.moved[source.id] = folder_id
        if not source.has_code and source.error is None:
            changes.pending.append((source.id, Path(path)))
        return
    image_id = db.insert_image(folder_id, path, state.size, state.mtime_ns, digest)
    changes.added += 1
    changes.pending.append((image_id, Path(path)))


def _moved_from_elsewhere(db: IndexDatabase, digest: str, state: FileState, model_id: str) -> ImageRecord | None:
    """A known photo with this content whose file no longer exists: the same photo, moved here."""
    for record in db.images_with_hash(digest, state.size, model_id):
        if record.hash != UNREAD and not Path(record.path).exists():
            return record
    return None


def describe_error(error: Exception) -> str:
    """A short, readable reason why a photo could not be indexed."""
    if isinstance(error, UnidentifiedImageError):
        return "not a photo format that can be read (or the file is damaged)"
    if isinstance(error, Image.DecompressionBombError):
        return f"image too large to decode safely ({error})"
    if isinstance(error, OSError) and error.strerror:
        return f"cannot read the file: {error.strerror}"
    return f"cannot decode: {error}" if str(error) else f"cannot decode ({type(error).__name__})"


def _decode(path: Path, spec: Preprocessing) -> DecodedPhoto | Exception:
    try:
        return decode_for_network(path, spec)
    except Exception as error:  # any failure of one photo is recorded, never fatal
        return error


def encode_pending(
    model: PHPQModel,
    pending: list[tuple[int, Path]],
    store: Callable[[list[EncodedImage]], None],
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    batch_size: int = 32,
    decode_threads: int = 2,
) -> IndexProgress:
    """Decode photos in a thread pool (one batch ahead) and encode them in batches; ``store`` each batch."""
    state = IndexProgress("encoding", total=len(pending))
    start = time.perf_counter()
    spec = model.info.preprocessing
    batches = [pending[i : i + batch_size] for i in range(0, len(pending), batch_size)]
    with ThreadPoolExecutor(max_workers=decode_threads, thread_name_prefix="phpq-decode") as pool:

        def submit(batch: list[tuple[int, Path]]) -> list[Future]:
            return [pool.submit(_decode, path, spec) for _, path in batch]

        upcoming = submit(batches[0]) if batches else []
        if progress is not None and batches:
            progress(state)  # encoding starts: the total is known before the first batch is done
        for index, batch in enumerate(batches):
            if cancel is not None and cancel.cancelled:
                for future in upcoming:
                    future.cancel()
                break
            decoded = [future.result() for future in upcoming]
            upcoming = submit(batches[index + 1]) if index + 1 < len(batches) else []
            results = _encode_batch(model, batch, decoded)
            store(results)
            state.done += len(results)
            state.failed += sum(result.error is not None for result in results)
            state.elapsed = time.perf_counter() - start
            if progress is not None:
                progress(state)
    state.elapsed = time.perf_counter() - start
    return state


def _encode_batch(
    model: PHPQModel, batch: list[tuple[int, Path]], decoded: list[DecodedPhoto | Exception]
) -> list[EncodedImage]:
    results: list[EncodedImage] = []
    good = [i for i, item in enumerate(decoded) if not isinstance(item, Exception)]
    code_of: dict[int, bytes] = {}
    descriptor_of: dict[int, bytes] = {}
    if good:
        encoding = model.encode_photos(
            np.stack([decoded[i].array for i in good]),
            [photo_source(batch[i][1], decoded[i]) for i in good],
            [decoded[i].full_size for i in good],
        )
        code_of = {i: code.astype(np.uint8).tobytes() for i, code in zip(good, encoding.codes, strict=True)}
        if encoding.descriptors is not None:
            descriptor_of = dict(zip(good, to_blobs(encoding.descriptors), strict=True))
    for i, ((image_id, path), item) in enumerate(zip(batch, decoded, strict=True)):
        if isinstance(item, Exception):
            reason = describe_error(item)
            log.warning("%s: %s", path, reason)
            results.append(EncodedImage(image_id, None, error=reason))
        else:
            width, height = item.full_size
            results.append(EncodedImage(image_id, code_of[i], width, height, descriptor=descriptor_of.get(i)))
    return results
