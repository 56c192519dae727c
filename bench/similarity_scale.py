"""The window's "Rank by" choices and the percent it shows beside a result (``SearchHit.own_similarity``),
measured through the app itself (``Library.search`` on a temporary index, photos named by their folders).

Two collections:
- ``cub``: the first ``--species`` CUB classes (species the bundled model was trained on); the photos at
  even positions of each class are indexed, each class's first ``--queries`` photos at odd positions
  query (not indexed);
- ``other``: birds525-dev (263 species x 5, nearly all unknown to the model), all indexed; each species'
  first photo queries the other 1,314 (an indexed query is left out of its own results).

For each "Rank by" choice (``phpq.ranking.RANK_CHOICES``, the window's table) and the window's result
count (40): the share of the query's species among its first ``PRECISION_AT`` results (P@k: 10 on cub, 4
on other, where 4 photos of the species are left), and the percent shown, and the ranking score, of the
results of the query's species and of other species (10th, 50th and 90th percentiles). Last, a copy of an
indexed photo queries: the window says "Same photo" for it.

Usage: python -m bench.similarity_scale [--cub DIR] [--other DIR] [--species 40] [--queries 3] [--model M]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from phpq.library import Library
from phpq.prototypes import display_name
from phpq.ranking import RANK_CHOICES
from phpq.search import SearchHit

TOP_K = 40  # the window's default result count
PRECISION_AT = {"cub": 10, "other": 4}


def percent(hit: SearchHit) -> int:
    """What the window shows (``phpq.gui.captions.similarity_percent``)."""
    similarity = hit.similarity if hit.own_similarity is None else hit.own_similarity
    return round(100 * min(max(similarity, 0.0), 1.0))


def percentiles(values: list[float]) -> str:
    return " ".join(f"{value:5.1f}" for value in np.percentile(values, [10, 50, 90]))


def cub_collection(cub: Path, species: int, queries: int, folder: Path) -> list[Path]:
    """Copy the even-position photos of the first classes into ``folder``/<class>/; the query photos back."""
    chosen = []
    for class_folder in sorted(path for path in cub.iterdir() if path.is_dir())[:species]:
        photos = sorted(class_folder.glob("*.jpg"))
        (folder / class_folder.name).mkdir(parents=True)
        for photo in photos[0::2]:
            shutil.copy2(photo, folder / class_folder.name / photo.name)
        chosen += photos[1::2][:queries]
    return chosen


def measure(library: Library, name: str, queries: list[Path]) -> None:
    """P@k and the percentiles of the percent and the ranking score, for every choice."""
    k = PRECISION_AT[name]
    counts = library.species()
    print(f"{name}: {len(queries)} queries, {sum(counts.values()):,} photos of {len(counts)} species")
    for rank in RANK_CHOICES:
        precision: list[float] = []
        shown: dict[bool, list[float]] = {True: [], False: []}
        scores: dict[bool, list[float]] = {True: [], False: []}
        for query in queries:
            species = display_name(query.parent.name)  # the name its folder gives its species' photos
            hits = library.search(query, top_k=TOP_K, weight=rank.weight, steps=rank.steps).hits
            precision.append(sum(hit.species == species for hit in hits[:k]) / k)
            for hit in hits:
                shown[hit.species == species].append(percent(hit))
                scores[hit.species == species].append(100 * hit.similarity)
        print(f"  rank by {rank.label}: P@{k} {np.mean(precision):.3f}")
        for same in (True, False):
            print(
                f"    {'same species ' if same else 'other species'} percent shown {percentiles(shown[same])}"
                f"   ranking score x100 {percentiles(scores[same])}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cub", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--other", type=Path, default=Path("../shared/data/birds525-dev"))
    parser.add_argument("--species", type=int, default=40, help="CUB classes in the cub collection")
    parser.add_argument("--queries", type=int, default=3, help="query photos per CUB class")
    parser.add_argument("--model", type=Path, help="an exported model (default: the bundled one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        collections = {
            "cub": (root / "cub", cub_collection(args.cub, args.species, args.queries, root / "cub")),
            "other": (args.other, [sorted(folder.glob("*.jpg"))[0] for folder in sorted(args.other.iterdir())]),
        }
        for name, (folder, queries) in collections.items():
            with Library(root / f"{name}.sqlite3", prefer_cuda=False) as library:
                if args.model is not None:
                    library.activate_model(library.import_model(args.model).id)
                library.add_folder(folder, species_from_folders=True)
                library.index()
                measure(library, name, queries)
                if name == "cub":
                    copy = root / "copy.jpg"
                    shutil.copy2(sorted(folder.rglob("*.jpg"))[0], copy)
                    first = library.search(copy, top_k=3).hits[0]
                    print(f"  a copy of an indexed photo: first, same_photo={first.same_photo}, {percent(first)} %")


if __name__ == "__main__":
    main()
