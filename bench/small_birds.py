"""Make the small-birds copy of a photo set (phpq.eval.small_birds), for `phpq-eval --protocol other`.

Usage: python -m bench.small_birds [--data ../shared/data/birds525-dev] [--backgrounds ../shared/data/cub200/train]
                                   [--out runs/small-other] [--share 0.35] [--seed 0]

Then: phpq-eval --model M.onnx --data runs/small-other --protocol other   (the `small-other` numbers)
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from phpq.eval.small_birds import write_small_birds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/birds525-dev"))
    parser.add_argument("--backgrounds", type=Path, default=Path("../shared/data/cub200/train"))
    parser.add_argument("--out", type=Path, default=Path("runs/small-other"))
    parser.add_argument("--share", type=float, default=0.35, help="the photo's height as a share of the frame's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_small_birds(args.data, args.backgrounds, args.out, args.share, args.seed)


if __name__ == "__main__":
    main()
