"""int8 vs fp32 on this CPU: code agreement, mAP on a protocol, file size and images per second.

Usage: python bench/int8.py --model runs/models/val64.onnx --data ../shared/data/cub200/train [--protocol val]
Quantizes to MODEL.int8.onnx (calibrated on training photos of the protocol) unless it exists.
Speed is measured in one run, alternating fp32 and int8 on the same preprocessed batch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.imaging import load_and_preprocess
from phpq.model import PHPQModel
from phpq_train.evaluate import evaluate_exported_model


def images_per_second(model: PHPQModel, batch: np.ndarray, repeats: int) -> float:
    model.encode(batch)
    start = time.perf_counter()
    for _ in range(repeats):
        model.encode(batch)
    return repeats * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--protocol", default="val")
    parser.add_argument("--calibration", type=int, default=128, help="training photos used for calibration")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    split = split_protocol(load_photo_set(args.data), args.protocol)
    fp32 = PHPQModel(args.model, prefer_cuda=False)
    int8_path = args.model.with_suffix(".int8.onnx")
    if not int8_path.exists():
        from phpq_train.export.quantize import quantize_int8

        step = max(1, len(split.train) // args.calibration)
        quantize_int8(args.model, int8_path, [p.path for p in split.train[::step]], fp32.info.preprocessing)
    int8 = PHPQModel(int8_path, prefer_cuda=False)
    batch = np.stack([load_and_preprocess(p.path, fp32.info.preprocessing) for p in split.query[:32]])
    speeds = {"fp32": [], "int8": []}
    for _ in range(args.rounds):
        speeds["fp32"].append(images_per_second(fp32, batch, 3))
        speeds["int8"].append(images_per_second(int8, batch, 3))
    results = {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        metrics, codes = evaluate_exported_model(model, split.query, split.database)
        results[name] = {"codes": codes, "mAP@all": metrics["mAP@all"]}
    agreement = float((results["fp32"]["codes"] == results["int8"]["codes"]).mean())
    report = {
        "protocol": args.protocol,
        "fp32": {
            "MiB": round(args.model.stat().st_size / 2**20, 1),
            "img_per_s": round(float(np.median(speeds["fp32"])), 1),
            "mAP@all": round(results["fp32"]["mAP@all"], 4),
        },
        "int8": {
            "MiB": round(int8_path.stat().st_size / 2**20, 1),
            "img_per_s": round(float(np.median(speeds["int8"])), 1),
            "mAP@all": round(results["int8"]["mAP@all"], 4),
        },
        "code_agreement": round(agreement, 4),
    }
    report["speed_ratio_int8_over_fp32"] = round(report["int8"]["img_per_s"] / report["fp32"]["img_per_s"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
