"""`phpq`: index photo folders and search them by photo from a terminal.

Exit codes: 0 success; 1 the library cannot work (the database or the model cannot be opened, the
index is damaged, or another instance is writing to it); 2 bad input (a usage error, a missing folder
or photo, an unknown model); 130 interrupted (Ctrl+C; what was committed stays, and the next
`phpq index` carries on).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from phpq.db import DatabaseError
from phpq.index import IndexProgress
from phpq.library import IndexReport, Library, LibraryError, ReadOnlyError
from phpq.model import ModelError
from phpq.ranking import RANK_CHOICES, ranked_with
from phpq.scan import warm_up_in_background
from phpq.search import SearchHit, SearchResult
from phpq.species import SpeciesGroup, group_by_species

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_search_command(commands: argparse._SubParsersAction) -> None:
    """``phpq search IMAGE``: its options, the ranking ones (``--rank`` or ``--weight``) among them."""
    search = commands.add_parser("search", help="find the photos that look most like IMAGE")
    search.add_argument("image", type=Path)
    search.add_argument("--top", type=int, default=20, help="number of results (default 20)")
    search.add_argument("--folder", type=Path, action="append", help="only search this folder (repeatable)")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.add_argument("--group", action="store_true", help="results grouped by species label, best group first")
    ranking = search.add_mutually_exclusive_group()
    ranking.add_argument(
        "--rank",
        choices=[rank.key for rank in RANK_CHOICES],
        help="what to rank by, as the window's Rank by box: known (species), balanced (the model's own), any"
        " (bird; for birds from elsewhere)",
    )
    ranking.add_argument(
        "--weight",
        type=float,
        help="a fixed weight of the code similarity in the fused ranking, 0 to 1 (default: the model's own,"
        " which may be set per query)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phpq", description="Find look-alike photos in your own folders.")
    parser.add_argument("--db", type=Path, help="index database (default: the user data directory)")
    parser.add_argument("--cpu", action="store_true", help="do not try CUDA")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True)

    add = commands.add_parser("add", help="add a folder and index it")
    add.add_argument("folder", type=Path)
    add.add_argument("--no-index", action="store_true", help="only register the folder")
    add.add_argument(
        "--species-from-folders",
        action="store_true",
        help="each photo's parent folder name is its species label (kept for later scans of the folder)",
    )

    index = commands.add_parser("index", help="bring the index up to date (all folders or one)")
    index.add_argument("folder", type=Path, nargs="?")

    add_search_command(commands)

    identify = commands.add_parser("identify", help="the likely species of IMAGE, from your labels and the model")
    identify.add_argument("image", type=Path)
    identify.add_argument("--json", action="store_true", help="machine-readable output")

    label = commands.add_parser(
        "label", help="give photos (a folder: all under it) a species label: phpq label PATH... NAME, or --clear"
    )
    label.add_argument("items", nargs="+", metavar="PATH... NAME")
    label.add_argument("--clear", action="store_true", help="clear the photos' labels (every argument is a path)")

    status = commands.add_parser("status", help="counts, model, provider and unreadable files")
    status.add_argument("--json", action="store_true")

    remove = commands.add_parser("remove", help="forget a folder (the photos are not touched)")
    remove.add_argument("folder", type=Path)

    commands.add_parser("rebuild", help="set a damaged index aside, start a new one with the same folders, index")

    models = commands.add_parser("models", help="list, import or activate exported models")
    models_commands = models.add_subparsers(dest="models_command")
    models_commands.add_parser("list", help="list the installed models (default)")
    model_import = models_commands.add_parser("import", help="install a model exported by phpq-export")
    model_import.add_argument("file", type=Path)
    model_import.add_argument("--activate", action="store_true", help="make it the active model")
    activate = models_commands.add_parser("activate", help="search with this model (index again after)")
    activate.add_argument("model_id", help="the model id or a unique prefix")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.command in ("search", "identify"):
        warm_up_in_background()  # numba's start-up overlaps with opening the index, the model and the query
    try:
        if args.command == "rebuild":
            with Library.rebuild(args.db, prefer_cuda=not args.cpu) as library:
                return run_index_folders(library, None)
        with Library(args.db, prefer_cuda=not args.cpu) as library:
            return COMMANDS[args.command](library, args)
    except (DatabaseError, ModelError, ReadOnlyError, sqlite3.Error) as error:
        print(f"phpq: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except (LibraryError, FileNotFoundError) as error:
        print(f"phpq: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("phpq: interrupted; what was indexed is kept, run `phpq index` to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `phpq status | head`: the reader left; no traceback, no second error at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE


def run_add(library: Library, args: argparse.Namespace) -> int:
    folder = library.add_folder(args.folder, species_from_folders=args.species_from_folders)
    print(f"added {folder.path}" + (" (species from folder names)" if folder.species_from_folders else ""))
    return EXIT_OK if args.no_index else run_index_folders(library, [folder.path])


def run_index(library: Library, args: argparse.Namespace) -> int:
    return run_index_folders(library, None if args.folder is None else [args.folder])


def run_index_folders(library: Library, folders: list[Path] | None) -> int:
    bar: tqdm | None = None

    def progress(state: IndexProgress) -> None:
        nonlocal bar
        if state.phase == "encoding":
            if bar is None:
                bar = tqdm(total=state.total, unit="photo", desc="indexing", dynamic_ncols=True)
            bar.update(state.done - bar.n)
            bar.set_postfix(failed=state.failed, refresh=False)

    try:
        report = library.index(folders, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    print_report(report)
    return EXIT_OK


def print_report(report: IndexReport) -> None:
    unreadable = report.failed + report.unreadable
    print(
        f"{report.folders} folder(s) in {report.seconds:.1f} s: {report.encoded} encoded, {unreadable} unreadable,"
        f" {report.added} new, {report.modified} changed, {report.moved} moved, {report.removed} removed,"
        f" {report.unchanged} unchanged"
    )
    for problem in report.problems:
        print(f"  problem: {problem}")


def run_search(library: Library, args: argparse.Namespace) -> int:
    if args.top < 1:
        raise LibraryError("--top must be at least 1")
    weight, steps = ranked_with(args.rank, args.weight)
    result = library.search(args.image, top_k=args.top, folders=args.folder, weight=weight, steps=steps)
    groups = group_by_species(result.hits) if args.group else [SpeciesGroup(None, result.hits, 0.0)]
    if args.json:
        summary = {
            "searched": result.n_searched,
            "code_weight": result.weight,
            "ranked_for": ranked_for(result),
            "timings_ms": result.timings_ms,
        }
        if args.group:
            found = [
                {
                    "species": g.species,
                    "count": len(g.hits),
                    "best_similarity": round(g.best_similarity, 6),
                    "results": [hit_json(hit) for hit in g.hits],
                }
                for g in groups
            ]
            print(json.dumps({"groups": found, **summary}))
        else:
            print(json.dumps({"results": [hit_json(hit) for hit in result.hits], **summary}))
        return EXIT_OK
    rank = 0
    for group in groups:
        if args.group:
            print(f"{group.species or 'no species label'}: {len(group.hits)}, best {group.best_similarity:.3f}")
        for hit in group.hits:
            rank += 1
            label = "" if args.group or hit.species is None else f"  [{hit.species}]"
            print(f"{rank:4d}  {hit.similarity:6.3f}  {hit.path}{label}{'  (same photo)' if hit.same_photo else ''}")
    total_ms = sum(result.timings_ms.values())
    weight = "" if result.weight is None else f" (code weight {result.weight:g})"
    gate = "" if result.known_species is None else f", ranked as for {ranked_for(result)}"
    print(f"{len(result.hits)} of {result.n_searched} photos in {total_ms:.1f} ms{weight}{gate}", file=sys.stderr)
    return EXIT_OK


def ranked_for(result: SearchResult) -> str | None:
    """The model's collection gate's choice: "known species", "any bird", or None without a gate."""
    return None if result.known_species is None else "known species" if result.known_species else "any bird"


def hit_json(hit: SearchHit) -> dict:
    return {
        "path": str(hit.path),
        "similarity": round(hit.similarity, 6),
        "species": hit.species,
        "same_photo": hit.same_photo,
    }


def run_identify(library: Library, args: argparse.Namespace) -> int:
    found = library.identify(args.image)
    if args.json:
        suggestions = [asdict(suggestion) for suggestion in found.suggestions]
        print(json.dumps({"photo": str(args.image), "summary": found.summary(), "suggestions": suggestions}))
        return EXIT_OK
    print(found.summary() or "no suggestion: label some photos (phpq label, or phpq add --species-from-folders)")
    for suggestion in found.suggestions:
        sure = "" if suggestion.confident else ", not sure"
        print(f"  {suggestion.species}  ({suggestion.evidence}{sure})")
    return EXIT_OK


def run_label(library: Library, args: argparse.Namespace) -> int:
    if not args.clear and len(args.items) < 2:
        raise LibraryError("give the photos, then the species name (or --clear)")
    paths, species = (args.items, None) if args.clear else (args.items[:-1], args.items[-1])
    if species is not None and Path(species).exists():
        raise LibraryError(f"the last argument is the species name, but {species} is a file or folder")
    count = library.label([Path(path) for path in paths], species)
    print(f"{'cleared the label of' if species is None else f'labelled {species!r}:'} {count} photo(s)")
    return EXIT_OK


def run_status(library: Library, args: argparse.Namespace) -> int:
    status = library.status()
    errors = library.unreadable(limit=20)
    if args.json:
        data = asdict(status)
        data["model"] = {"id": status.model.id, "name": status.model.name, "path": str(status.model.path)}
        data["kind"] = status.kind
        data["errors_sample"] = [{"path": str(path), "error": reason} for path, reason in errors]
        data["species"] = library.species()
        print(json.dumps(data, default=str))
        return EXIT_OK
    print(f"database   {status.database} (schema {status.schema_version})")
    print(f"model      {status.model.title} ({status.model.id[:12]}, {status.bits} bits) on {status.provider}")
    print(f"search     {status.kind}")
    print(
        f"photos     {status.images} known, {status.indexed} indexed, {status.pending} to index, "
        f"{status.errors} unreadable"
    )
    species = library.species()
    if species:
        print(f"species    {len(species)} labels on {sum(species.values())} photos")
    for folder in status.folders:
        scanned = "not scanned yet" if folder.scanned is None else f"scanned {_local_time(folder.scanned)}"
        print(f"folder     {folder.path}  ({folder.n_images} photos, {folder.n_errors} unreadable, {scanned})")
    for path, reason in errors:
        print(f"unreadable {path}: {reason}")
    return EXIT_OK


def _local_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def run_remove(library: Library, args: argparse.Namespace) -> int:
    folder = library.remove_folder(args.folder)
    print(f"removed {folder.path} ({folder.n_images} photos forgotten; no file was touched)")
    return EXIT_OK


def run_models(library: Library, args: argparse.Namespace) -> int:
    if args.models_command == "import":
        record = library.import_model(args.file)
        print(f"imported {record.title} ({record.id[:12]})")
        if args.activate:
            library.activate_model(record.id)
            print("activated; run `phpq index` to encode your photos with it")
        return EXIT_OK
    if args.models_command == "activate":
        record = library.activate_model(args.model_id)
        print(f"active model: {record.title} ({record.id[:12]}); run `phpq index` to encode your photos with it")
        return EXIT_OK
    active = library.active_model_id
    for record in library.models():
        marker = "*" if record.id == active else " "
        bits = record.metadata.get("bits", "?")
        print(f"{marker} {record.id[:12]}  {bits:>3} bits  {record.title}  {record.path}")
        if record.summary:
            print(f"  {'':12}  {'':8}  {record.summary}")
    return EXIT_OK


COMMANDS = {
    "add": run_add,
    "index": run_index,
    "search": run_search,
    "identify": run_identify,
    "label": run_label,
    "status": run_status,
    "remove": run_remove,
    "models": run_models,
}


if __name__ == "__main__":
    sys.exit(main())
