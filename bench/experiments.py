"""Run a list of cached-mode trainings (each a set of --set overrides) and print one line per run: mAP@all
and P@4 of the codes alone, the continuous feature, the descriptor alone and the fused ranking at each logged
weight (``fused@W_...``).

Usage: python bench/experiments.py --runs runs/exp [--resume] --run NAME "k=v k=v" ...
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from phpq_train.config import load_config
from phpq_train.train import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, help="changes on top of the recipe (default: the recipe alone)")
    parser.add_argument("--runs", type=Path, default=Path("runs/exp"))
    parser.add_argument("--run", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True)
    parser.add_argument("--resume", action="store_true", help="continue each run from its last.pt when it has one")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name, overrides in args.run:
        output = args.runs / name
        config = load_config(args.config, [*overrides.split(), f'output="{output}"'])
        checkpoint = output / "last.pt"
        metrics = train(config, resume=checkpoint if args.resume and checkpoint.exists() else None)
        summary = {key: round(value, 4) for key, value in metrics.items() if key.endswith(("mAP@all", "P@4"))}
        line = {"run": name, "overrides": overrides, "protocol": config.protocol, "bits": config.model.bits, **summary}
        print(json.dumps(line), flush=True)
        with (args.runs / "results.jsonl").open("a") as stream:
            stream.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
