"""``phpq-export CHECKPOINT -o model.onnx``: export, then check parity on photos (fails when it does not hold)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import tomllib

from phpq.imaging import is_image_path
from phpq_train.extra import needs_train_extra

# Fields of a model config that change the exported graph: an exported model written again with none of them
# changed keeps its graph (and model id) and gets new metadata only.
GRAPH_FIELDS = ("general_dim", "general_weight", "general_from", "mirror_average", "encode_size")


@needs_train_extra
def export_main(argv: list[str] | None = None) -> int:
    """Export a phpq-train checkpoint to a self-describing ONNX model and check it against PyTorch."""
    parser = argparse.ArgumentParser(prog="phpq-export", description=export_main.__doc__)
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a phpq-train checkpoint, or a model exported before (.onnx) to write again in today's format",
    )
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument(
        "--config",
        type=Path,
        help="a TOML file of changes: its [model] fields replace the model's, its [description] gives the title"
        " and summary (e.g. phpq_train/recipes/thorough.toml); the options below override it",
    )
    parser.add_argument("--photos", type=Path, help="photo folder for the parity check (default: the training data)")
    parser.add_argument("--parity-photos", type=int, default=64, help="how many photos the parity check encodes")
    parser.add_argument("--fp16-weights", action="store_true", help="store weights as float16 (half the size)")
    parser.add_argument(
        "--mirror-average",
        action="store_true",
        help="encode each photo and its mirror image, pooled features averaged (twice the backbone work;"
        " the recipe's models do it already, this turns it on for checkpoints trained before it had it)",
    )
    parser.add_argument(
        "--encode-size",
        type=int,
        help="encode photos at this input size instead of the model's encode_size (the recipe's 288 for a"
        " model trained at 256; larger costs more backbone work per photo: docs/results.md)",
    )
    parser.add_argument(
        "--search-from-recipe",
        action="store_true",
        help="write the recipe's search settings (weights, query expansion, neighbour re-ranking, collection"
        " centring) instead of the checkpoint's, for a checkpoint trained before they were chosen again",
    )
    parser.add_argument(
        "--general-dim",
        type=int,
        help="export with a general descriptor of this many dims (0: none; default: the model's or the recipe's;"
        " see docs/training.md)",
    )
    parser.add_argument(
        "--zoom",
        help='when to encode a photo again around a small bird, as JSON (phpq.zoom.Zoom): {"max_side": 1.0,'
        ' "margin": 1.0} zooms every photo (better on every protocol, indexing at about half the speed), {} never'
        " (default: the model's, or the recipe's for a model exported before zooming existed; docs/results.md)",
    )
    parser.add_argument("--title", help="what a user calls the model (the window's model list); default: the source's")
    parser.add_argument(
        "--summary", help="what the model is good for, in a user's words (the model list); default: the source's"
    )
    parser.add_argument("--int8", action="store_true", help="also write OUTPUT.int8.onnx (static QDQ quantization)")
    parser.add_argument("--calibration-photos", type=int, default=128, help="photos that calibrate the int8 model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from phpq.model import FORMAT_VERSION
    from phpq.zoom import Zoom
    from phpq_train.checkpoint import model_from_checkpoint
    from phpq_train.config import recipe_values
    from phpq_train.export.from_onnx import payload_from_file
    from phpq_train.export.onnx_export import export_checkpoint, search_metadata, write_metadata
    from phpq_train.export.parity import check_parity
    from phpq_train.general import attach_to_checkpoint_model
    from phpq_train.model import SEARCH_FIELDS

    try:
        payload = payload_from_file(args.checkpoint)
        model = model_from_checkpoint(payload)
        source_config = model.config
    except Exception as error:  # torch.load and onnx.load raise many kinds for foreign files
        print(f"phpq-export: cannot read checkpoint {args.checkpoint}: {error}", file=sys.stderr)
        return 2
    if args.config:
        try:
            changes = tomllib.loads(args.config.read_text())
            model.config = replace(model.config, **changes.get("model", {}))
        except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError) as error:
            print(f"phpq-export: --config {args.config}: {error}", file=sys.stderr)
            return 2
        payload["description"] = {**payload.get("description", {}), **changes.get("description", {})}
    if args.mirror_average:
        model.config = replace(model.config, mirror_average=True)
    if args.encode_size:
        model.config = replace(model.config, encode_size=args.encode_size)
    if args.search_from_recipe:
        recipe = recipe_values()["model"]
        model.config = replace(model.config, **{field: recipe[field] for field in SEARCH_FIELDS})
    if args.general_dim is not None:
        model.config = replace(model.config, general_dim=args.general_dim)
    if args.zoom is not None:
        try:
            Zoom.from_json(args.zoom)
            model.config = replace(model.config, zoom=json.loads(args.zoom))
        except ValueError as error:
            print(f"phpq-export: --zoom: {error}", file=sys.stderr)
            return 2
    for key in ("title", "summary"):
        if getattr(args, key) is not None:
            payload.setdefault("description", {})[key] = getattr(args, key)
    same_graph = all(getattr(source_config, field) == getattr(model.config, field) for field in GRAPH_FIELDS)
    same_zoom = payload["model_config"].get("zoom") == model.config.zoom
    same_codes = payload.get("exported_format") == FORMAT_VERSION and same_zoom
    if args.checkpoint.suffix == ".onnx" and same_graph and same_codes:
        # Nothing in the graph or the codes changes: only the search settings are written again, the model id
        # stays. A model of an older format (or another zoom) is exported again and gets a new model id.
        changes = search_metadata(model.config) | payload.get("description", {})
        model_id = write_metadata(args.checkpoint, args.output, changes)
        print(f"wrote {args.output}: metadata of {args.checkpoint.name} only (same graph), model id {model_id[:16]}")
        return 0
    folder = args.photos or Path(payload.get("train_config", {}).get("data", ""))
    photos = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p)) if folder.is_dir() else []
    if not photos:
        print(f"phpq-export: no photos for the parity check in {folder} (give --photos DIR)", file=sys.stderr)
        return 2
    step = max(1, len(photos) // args.parity_photos)
    if model.config.general_dim:
        try:
            attach_to_checkpoint_model(model, payload)
        except (OSError, ValueError) as error:
            print(f"phpq-export: the general descriptor fits on the training photos: {error}", file=sys.stderr)
            return 2
    model_id = export_checkpoint(model, payload, args.output, fp16_weights=args.fp16_weights)
    report = check_parity(model, args.output, photos[::step][: args.parity_photos])
    print(f"wrote {args.output} ({args.output.stat().st_size / 2**20:.1f} MiB), model id {model_id[:16]}")
    print(report)
    if not report.ok:
        args.output.rename(args.output.with_suffix(".failed-parity.onnx"))
        print("phpq-export: parity check failed; the file was renamed *.failed-parity.onnx", file=sys.stderr)
        return 1
    if args.int8:
        import numpy as np

        from phpq.model import PHPQModel
        from phpq_train.export.quantize import quantize_int8

        int8_path = args.output.with_suffix(".int8.onnx")
        calibration = photos[:: max(1, len(photos) // args.calibration_photos)][: args.calibration_photos]
        with tempfile.TemporaryDirectory(prefix="phpq-int8-") as tmp:
            # Quantize from float32 storage: the quantizer does not see through float16 weights and Casts.
            source = args.output
            if args.fp16_weights:
                source = Path(tmp) / "fp32.onnx"
                export_checkpoint(model, payload, source)
            quantize_int8(source, int8_path, calibration, model.config.encode_preprocessing)
        checked = photos[::step][: args.parity_photos]
        fp32_codes = PHPQModel(args.output, prefer_cuda=False).encode_paths(checked).codes
        int8_codes = PHPQModel(int8_path, prefer_cuda=False).encode_paths(checked).codes
        print(
            f"wrote {int8_path} ({int8_path.stat().st_size / 2**20:.1f} MiB); codes identical to fp32: "
            f"{100 * float(np.mean(fp32_codes == int8_codes)):.1f}% (mAP and speed: bench/int8.py)"
        )
    return 0
