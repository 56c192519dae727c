"""Command lines: ``phpq-train`` (also ``python -m training``), ``phpq-eval`` and ``phpq-compact``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def train_main(argv: list[str] | None = None) -> int:
    """Train PHPQ from a TOML config plus ``--set key=value`` overrides."""
    parser = argparse.ArgumentParser(prog="phpq-train", description=train_main.__doc__)
    parser.add_argument("--config", type=Path, help="TOML config file (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set model.n_subspaces=4 --set epochs=10",
    )
    parser.add_argument("--output", help="run directory (checkpoint, log.jsonl, training.png)")
    parser.add_argument("--resume", type=Path, help="continue from a checkpoint (e.g. RUN/last.pt)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    from training.config import load_config
    from training.train import train

    overrides = args.overrides + ([f"output={json.dumps(args.output)}"] if args.output else [])
    try:
        config = load_config(args.config, overrides)
    except (ValueError, TypeError, OSError) as error:
        parser.error(str(error))
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    metrics = train(config, resume=args.resume)
    if metrics:
        print(json.dumps({"output": config.output, **metrics}, indent=2))
    return 0


def _print_table(rows: dict[str, float]) -> None:
    width = max(len(k) for k in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value:.4f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


def eval_main(argv: list[str] | None = None) -> int:
    """Retrieval mAP of a PHPQ checkpoint (or of the frozen-backbone baseline) on two ImageFolder trees
    (--query/--database, classes matched by folder name) or on a protocol of one tree (--data/--protocol)."""
    parser = argparse.ArgumentParser(prog="phpq-eval", description=eval_main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a phpq-train checkpoint (.pt, needs torch)")
    source.add_argument("--model", type=Path, help="an exported .onnx model (ONNX Runtime only, no torch)")
    source.add_argument(
        "--baseline", choices=["gap", "gmp"], help="frozen backbone, global average or max pooling, cosine"
    )
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone of --baseline")
    parser.add_argument("--query", type=Path)
    parser.add_argument("--database", type=Path)
    parser.add_argument("--data", type=Path, help="one labelled tree split by --protocol")
    parser.add_argument("--protocol", choices=["val", "fresh", "unseen"], default="val")
    parser.add_argument("--distance", choices=["adc", "sdc"], default="adc")
    parser.add_argument("--weight", type=float, help="--model: weight of the code similarity (default: the model's)")
    parser.add_argument("--engine", choices=["auto", "onnxruntime", "torch"], default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    _setup_logging(False)
    if args.data is None and (args.query is None or args.database is None):
        parser.error("give --query and --database, or --data with --protocol")

    try:
        query, database, leave_one_out = _evaluation_sets(args)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    query_labels = np.array([p.label for p in query])
    database_labels = np.array([p.label for p in database])
    if args.model:
        from app.library import search_kind
        from app.model import ModelError, PHPQModel
        from training.evaluate import evaluate_exported_model

        if args.weight is not None and not 0.0 <= args.weight <= 1.0:
            parser.error("--weight must be between 0 and 1")
        try:
            model = PHPQModel(args.model)
        except ModelError as error:
            parser.exit(2, f"phpq-eval: {error}\n")
        metrics, _ = evaluate_exported_model(
            model, query, database, args.distance, args.workers or 1, leave_one_out, args.weight
        )
        weight = model.info.fusion_weight if args.weight is None else args.weight
        kind = (
            search_kind(model.info.descriptor_dim, weight, model.info.query_expansion)
            if args.distance == "adc"
            else "codes only, SDC"
        )
        report = {
            "method": f"PHPQ {model.info.bits} bits, {kind} (ONNX Runtime {model.provider})",
            **metrics,
        }
    elif args.checkpoint:
        report = _evaluate_checkpoint(args, query, query_labels, database, database_labels, leave_one_out)
    else:
        report = _evaluate_baseline(args, query, query_labels, database, database_labels, leave_one_out)
    report.update({"queries": len(query), "database": len(database)})
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0


def _evaluate_checkpoint(
    args: argparse.Namespace,
    query: list,
    query_labels: np.ndarray,
    database: list,
    database_labels: np.ndarray,
    leave_one_out: bool,
) -> dict:
    """Codes alone (ADC or SDC), descriptor alone and fused at the model's weight, from PyTorch."""
    import torch

    from training.evaluate import fused_report
    from training.train import encode_photos, load_checkpoint, model_from_checkpoint

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model_from_checkpoint(load_checkpoint(args.checkpoint)).to(device)
    encoded_query = encode_photos(model, query, device, args.engine, workers=args.workers)
    encoded_database = (
        encoded_query if leave_one_out else encode_photos(model, database, device, args.engine, workers=args.workers)
    )
    codebooks = model.head.quantizer.normalized_codebooks().detach().cpu().numpy()
    return {
        "method": f"PHPQ {model.config.bits} bits ({args.distance.upper()}, PyTorch checkpoint)",
        **fused_report(
            encoded_query,
            query_labels,
            encoded_database,
            database_labels,
            codebooks,
            (model.config.fusion_weight,),
            args.distance,
            leave_one_out,
        ),
    }


def _evaluate_baseline(
    args: argparse.Namespace,
    query: list,
    query_labels: np.ndarray,
    database: list,
    database_labels: np.ndarray,
    leave_one_out: bool,
) -> dict:
    from training.evaluate import evaluate_cosine
    from training.features import PyramidFeatureExtractor
    from training.inference import BatchRunner, run_over_photos

    extractor = PyramidFeatureExtractor(args.backbone, 224)
    layout = extractor.layout
    index = (layout.global_average_index if args.baseline == "gap" else layout.global_max_index)("head").numpy()
    runner = BatchRunner(extractor, 224, 1, engine=args.engine)
    photo_lists = (query,) if leave_one_out else (query, database)
    features = [run_over_photos(runner, photos, 224, workers=args.workers)[0][:, index] for photos in photo_lists]
    return {
        "method": f"{args.backbone} {args.baseline.upper()} + cosine (float)",
        **evaluate_cosine(features[0], query_labels, features[-1], database_labels, leave_one_out=leave_one_out),
    }


def _evaluation_sets(args: argparse.Namespace) -> tuple[list, list, bool]:
    """Query and database photos, and whether they are one gallery scored leave-one-out."""
    from app.datasets import Photo, load_photo_set, scan_image_folder, split_protocol

    if args.data is not None:
        split = split_protocol(load_photo_set(args.data), args.protocol)
        return split.query, split.database, split.leave_one_out
    query_set, database_set = scan_image_folder(args.query), scan_image_folder(args.database)
    names = {name: index for index, name in enumerate(database_set.class_names)}
    next_label = len(names)
    query = []
    for photo in query_set.photos:  # classes absent from the database get labels of their own
        name = query_set.class_names[photo.label]
        if name not in names:
            names[name] = next_label
            next_label += 1
        query.append(Photo(photo.path, names[name]))
    return query, database_set.photos, False


def compact_main(argv: list[str] | None = None) -> int:
    """Write a compact JPEG or WebP copy of a photo tree (for moving training data to a GPU machine)."""
    from training.compact import FORMATS, compact_copy

    parser = argparse.ArgumentParser(prog="phpq-compact", description=compact_main.__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    parser.add_argument("--short-side", type=int, default=240)
    parser.add_argument("--quality", type=int, default=70)
    parser.add_argument("--format", choices=sorted(FORMATS), default="jpeg", help="webp is about 30%% smaller")
    args = parser.parse_args(argv)
    _setup_logging(False)
    try:
        count, size = compact_copy(args.source, args.destination, args.short_side, args.quality, args.format)
    except (OSError, ValueError) as error:
        print(f"phpq-compact: {error}", file=sys.stderr)
        return 2
    print(f"{count} photos, {size / 2**20:.1f} MiB in {args.destination}")
    return 0
