"""What the window writes about a result, a species group and a folder: captions and tooltips."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from phpq.db import FolderRecord, PhotoSize
from phpq.search import SearchHit
from phpq.species import SpeciesGroup

# camera and phone file names that say nothing about the photo: IMG_0412, DSC01234, PXL_20230512_..., 1, 0003
_CAMERA_PREFIX = (
    r"(?:img|image|dsc|dscn|dscf|dcim|pxl|mvimg|pict|cimg|gopr|sam|imag|photo|picture|pic|p|_mg|wp|scan|screenshot)"
)
_GENERIC_STEM = re.compile(rf"{_CAMERA_PREFIX}?[\W_]*[\d\W_]*(?:copy|kopie|edited)?[\d\W_]*", re.IGNORECASE)


def is_generic_name(name: str) -> bool:
    """True for names a camera or phone gives (IMG_0412.jpg, DSC01234.JPG, 1.jpg) or very short ones."""
    stem = Path(name).stem
    return len(stem) <= 2 or _GENERIC_STEM.fullmatch(stem) is not None


def result_folders(paths: Sequence[Path]) -> list[str]:
    """For each path, the folder to show beside its name ("" when the name alone tells it apart).

    The folder is shown when the name looks generic or repeats among ``paths``; it is the shortest tail of
    the parent path that tells repeated names apart (``2023/05`` when ``2022/05/1.jpg`` is also listed).
    """
    repeats = Counter(path.name for path in paths)
    folders = []
    for path in paths:
        if repeats[path.name] == 1 and not is_generic_name(path.name):
            folders.append("")
            continue
        same_name = [other.parent.parts for other in paths if other.name == path.name and other != path]
        parts = path.parent.parts
        depth = 1
        while depth < len(parts) and any(other[-depth:] == parts[-depth:] for other in same_name):
            depth += 1
        tail = parts[-depth:] if parts else ()
        folders.append(str(Path(*tail)) if tail else str(path.parent))
    return folders


def file_size_text(size: int) -> str:
    """Bytes as a file manager shows them (decimal units), with the exact count: "2.4 MB (2,412,001 bytes)"."""
    value, unit = float(size), "bytes"
    for larger in ("kB", "MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit} ({size:,} bytes)"


def similarity_percent(hit: SearchHit) -> int:
    """The hit's own similarity to the query in percent, 0 to 100: the same scale for every query."""
    similarity = hit.similarity if hit.own_similarity is None else hit.own_similarity
    return round(100 * min(max(similarity, 0.0), 1.0))


def similarity_text(hit: SearchHit) -> str:
    """The number beside a result: "Same photo" for a byte-identical copy of the query, else "71 %"."""
    return "Same photo" if hit.same_photo else f"{similarity_percent(hit)} %"


def hit_caption(hit: SearchHit, folder: str) -> str:
    """The name, then the species label (if any), the similarity and the folder (where it is needed)."""
    details = [hit.species] if hit.species else []
    details.append(similarity_text(hit))
    if folder:
        details.append(f"in {folder}")
    return f"{hit.path.name}\n{' · '.join(details)}"


def hit_tooltip(hit: SearchHit, size: PhotoSize | None) -> str:
    """Full path, species, similarity (and what it means), ranking score, and the photo's size once known."""
    lines = [str(hit.path)]
    if hit.species:
        lines.append(f"species: {hit.species}")
    if hit.same_photo:
        lines.append("Same photo: a byte-identical copy of the photo you searched with")
    else:
        lines.append(
            f"{similarity_percent(hit)} % alike: this photo's own similarity to yours, on one scale for every search"
        )
    lines.append(f"ranking score {hit.similarity:.3f} (with its neighbours among the results)")
    if size is not None:
        pixels = f"{size.width:,} × {size.height:,} pixels · " if size.width and size.height else ""
        lines.append(pixels + file_size_text(size.bytes))
    return "\n".join(lines)


def photos_text(count: int) -> str:
    """ "1 photo", "1,234 photos"."""
    return f"{count:,} photo{'s' if count != 1 else ''}"


def group_caption(group: SpeciesGroup) -> str:
    """A species group's header: its name (or that it has none), its photos and its best similarity."""
    others = [hit for hit in group.hits if not hit.same_photo]
    best = f"best {max(similarity_percent(hit) for hit in others)} %" if others else "Same photo"
    return f"{group.species or 'No species name'} · {photos_text(len(group.hits))} · {best}"


def folder_label(folder: FolderRecord) -> str:
    """The folder's name, its photos, and what to know about it (unreadable files, gone, named by folders)."""
    problems = f" · {folder.n_errors:,} unreadable" if folder.n_errors else ""
    missing = "" if folder.path.is_dir() else " · not found"
    named = "\nspecies named by their folders" if folder.species_from_folders else ""
    return f"{folder.path.name or folder.path}\n{folder.n_images:,} photos{problems}{missing}{named}"
