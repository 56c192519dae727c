"""Choose the fusion weight w (similarity = w * ADC / M + (1 - w) * descriptor cosine) from the last
evaluation of three training runs of one recipe, on the val, fresh and unseen protocols.

The rule, fixed before looking at the numbers: among the logged weights whose val mAP@all is at least
``--val-floor`` (the hashing papers' protocol must stay strong), take the one with the highest mean of
fresh mAP@all and unseen P@4 (the two protocols that look like a user's collection); a tie goes to the
larger w. Prints one line per weight and the choice.

Usage: python bench/fusion_weight.py --val runs/r256/val --fresh runs/r256/fresh --unseen runs/r256/unseen
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def last_evaluation(run: Path) -> dict[str, float]:
    """The last record of a run's log.jsonl that holds evaluation metrics."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return next(record for record in reversed(records) if "mAP@all" in record)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for protocol in ("val", "fresh", "unseen"):
        parser.add_argument(f"--{protocol}", type=Path, required=True, help=f"run directory of the {protocol} protocol")
    parser.add_argument("--val-floor", type=float, default=0.75)
    args = parser.parse_args()
    val, fresh, unseen = (last_evaluation(run) for run in (args.val, args.fresh, args.unseen))
    weights = sorted(
        float(key.split("_")[0][len("fused@") :])
        for key in val
        if key.endswith("_mAP@all") and key.startswith("fused@")
    )
    best = None
    for w in weights:
        key = f"fused@{w:g}"
        row = {
            "w": w,
            "val mAP@all": round(val[f"{key}_mAP@all"], 4),
            "fresh mAP@all": round(fresh[f"{key}_mAP@all"], 4),
            "unseen P@4": round(unseen[f"{key}_P@4"], 4),
        }
        row["objective"] = round((row["fresh mAP@all"] + row["unseen P@4"]) / 2, 4)
        eligible = row["val mAP@all"] >= args.val_floor
        print(json.dumps({**row, "eligible": eligible}))
        if eligible and (best is None or row["objective"] >= best["objective"]):
            best = row
    print(json.dumps({"chosen": best}))


if __name__ == "__main__":
    main()
