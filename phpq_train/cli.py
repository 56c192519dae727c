"""Command lines: ``phpq-train`` (also ``python -m phpq_train``), ``phpq-eval`` and ``phpq-compact``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from phpq.eval.datasets import (
    MEASURED_PROTOCOLS,
    Photo,
    ProtocolSplit,
    load_photo_set,
    scan_image_folder,
    split_protocol,
)
from phpq.ranking import RANK_CHOICES, ranked_with
from phpq_train.extra import needs_train_extra


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@needs_train_extra
def train_main(argv: list[str] | None = None) -> int:
    """Train PHPQ: the bundled recipe, then a TOML file of changes (--config), then ``--set key=value``."""
    parser = argparse.ArgumentParser(prog="phpq-train", description=train_main.__doc__)
    parser.add_argument(
        "--config", type=Path, help="TOML file of changes to the bundled recipe (phpq_train/recipes/cub_cpu.toml)"
    )
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
    from phpq_train.config import load_config
    from phpq_train.train import train

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


@needs_train_extra
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
    parser.add_argument("--input-size", type=int, default=224, help="input size of --baseline")
    parser.add_argument("--query", type=Path)
    parser.add_argument("--database", type=Path)
    parser.add_argument("--data", type=Path, help="one labelled tree split by --protocol")
    parser.add_argument(
        "--protocol",
        choices=MEASURED_PROTOCOLS,
        default="val",
        help="other: every photo of --data queries all the others (e.g. ../shared/data/birds525-dev)",
    )
    parser.add_argument("--distance", choices=["adc", "sdc"], default="adc")
    ranking = parser.add_mutually_exclusive_group()
    ranking.add_argument(
        "--weight", type=float, help="--model: a fixed weight of the code similarity (default: the model's own)"
    )
    ranking.add_argument(
        "--rank", choices=[rank.key for rank in RANK_CHOICES], help="--model: as `phpq search --rank` ranks"
    )
    parser.add_argument("--engine", choices=["auto", "onnxruntime", "torch"], default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    _setup_logging(False)
    if args.data is None and (args.query is None or args.database is None):
        parser.error("give --query and --database, or --data with --protocol")

    try:
        split = _evaluation_sets(args)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    if args.model:
        from phpq.model import ModelError, PHPQModel
        from phpq_train.evaluate import evaluate_exported_model

        if args.weight is not None and not 0.0 <= args.weight <= 1.0:
            parser.error("--weight must be between 0 and 1")
        try:
            model = PHPQModel(args.model)
        except ModelError as error:
            parser.exit(2, f"phpq-eval: {error}\n")
        weight, steps = ranked_with(args.rank, args.weight)
        metrics, _ = evaluate_exported_model(
            model, split.query, split.database, args.distance, args.workers or 1, split.leave_one_out, weight, steps
        )
        settings = model.info.search.at_weight(weight).with_steps(steps)
        kind = settings.describe() if args.distance == "adc" else "codes only, SDC"
        report = {
            "method": f"PHPQ {model.info.bits} bits, {kind} (ONNX Runtime {model.provider})",
            **metrics,
        }
    elif args.checkpoint:
        report = _evaluate_checkpoint(args, split)
    else:
        report = _evaluate_baseline(args, split)
    report.update({"queries": len(split.query), "database": len(split.database)})
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0


def _evaluate_checkpoint(args: argparse.Namespace, split: ProtocolSplit) -> dict:
    """Codes alone (ADC or SDC), descriptor alone and fused at the model's weight (without the app's query
    expansion: `--model` on an export scores exactly as the app), from PyTorch."""
    import torch

    from phpq_train.checkpoint import load_checkpoint, model_from_checkpoint
    from phpq_train.evaluate import fused_report
    from phpq_train.train import encode_photos

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model_from_checkpoint(load_checkpoint(args.checkpoint)).to(device)
    encoded = [
        encode_photos(model, photos, device, args.engine, workers=args.workers) for photos in _photo_lists(split)
    ]
    codebooks = model.head.quantizer.normalized_codebooks().detach().cpu().numpy()
    return {
        "method": f"PHPQ {model.config.bits} bits ({args.distance.upper()}, PyTorch checkpoint)",
        **fused_report(
            encoded[0],
            _labels(split.query),
            encoded[-1],
            _labels(split.database),
            codebooks,
            (model.config.fusion_weight,),
            args.distance,
            split.leave_one_out,
        ),
    }


def _evaluate_baseline(args: argparse.Namespace, split: ProtocolSplit) -> dict:
    from phpq_train.evaluate import evaluate_cosine
    from phpq_train.features import PyramidFeatureExtractor
    from phpq_train.inference import BatchRunner, run_over_photos

    extractor = PyramidFeatureExtractor(args.backbone, args.input_size)
    layout = extractor.layout
    index = (layout.global_average_index if args.baseline == "gap" else layout.global_max_index)("head").numpy()
    runner = BatchRunner(extractor, args.input_size, 1, engine=args.engine)
    features = [
        run_over_photos(runner, photos, args.input_size, workers=args.workers)[0][:, index]
        for photos in _photo_lists(split)
    ]
    return {
        "method": f"{args.backbone} {args.baseline.upper()} {args.input_size} px + cosine (float)",
        **evaluate_cosine(
            features[0],
            _labels(split.query),
            features[-1],
            _labels(split.database),
            leave_one_out=split.leave_one_out,
        ),
    }


def _photo_lists(split: ProtocolSplit) -> list[list[Photo]]:
    """The photos to encode: the gallery once when it is scored leave-one-out, else query and database."""
    return [split.query] if split.leave_one_out else [split.query, split.database]


def _labels(photos: list[Photo]) -> np.ndarray:
    return np.array([photo.label for photo in photos])


def _evaluation_sets(args: argparse.Namespace) -> ProtocolSplit:
    """Query and database photos (with ``leave_one_out`` when they are one gallery)."""
    if args.data is not None:
        return split_protocol(load_photo_set(args.data), args.protocol)
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
    return ProtocolSplit([], query, database_set.photos, train_classes=0)


def compact_main(argv: list[str] | None = None) -> int:
    """Write a compact JPEG or WebP copy of a photo tree (for moving training data to a GPU machine)."""
    from phpq_train.compact import FORMATS, compact_copy

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
