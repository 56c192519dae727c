"""Scratch: search settings of a model with a general descriptor, swept on encodings made once.

python runs/thorough/sweep.py MODEL.onnx --data DATA --protocol P --cache runs/thorough/enc-X.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.eval.metrics import average_precision, precision_at_k, relevance_report
from phpq.fusion import AdaptiveWeight, NeighbourRerank
from phpq.model import Encoding, PHPQModel
from phpq_train.evaluate import search_rankings


def encodings(model: PHPQModel, paths: list[Path], cache: Path) -> Encoding:
    if cache.exists():
        data = np.load(cache)
        return Encoding(data["subvectors"], data["codes"], data["descriptors"])
    encoded = model.encode_paths(paths, threads=2)
    np.savez(cache, subvectors=encoded.subvectors, codes=encoded.codes, descriptors=encoded.descriptors)
    return encoded


def reweighted(encoded: Encoding, cut: int, b0: float, b: float, gdim: int) -> Encoding:
    d = encoded.descriptors
    trained = d[:, :cut] * np.sqrt((1 - b) / (1 - b0))
    general = d[:, cut : cut + gdim]
    general = general / np.linalg.norm(general, axis=1, keepdims=True) * np.sqrt(b)
    return Encoding(encoded.subvectors, encoded.codes, np.hstack([trained, general]).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--protocol", required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--configs", type=Path, required=True, help="JSON list of {b, w | low,high,threshold}")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    model = PHPQModel(args.model, prefer_cuda=False)
    general = json.loads(model.info.metadata.get("general_descriptor") or "{}")
    b0 = float(general.get("weight", 0.0))
    cut = model.info.descriptor_dim - int(general.get("dim", 0))
    split = split_protocol(load_photo_set(args.data), args.protocol)
    query_cache = args.cache.with_suffix(".query.npz")
    q = encodings(model, [p.path for p in split.query], query_cache)
    db = q if split.leave_one_out else encodings(model, [p.path for p in split.database], args.cache)
    ql, dl = np.array([p.label for p in split.query]), np.array([p.label for p in split.database])
    info0 = model.info
    stored = args.out.parent / f"perquery-{args.model.stem}-{args.protocol}.npz"
    per_query = dict(np.load(stored)) if stored.exists() else {}
    with args.out.open("a") as out:
        for config in json.loads(args.configs.read_text()):
            b = config["b"]
            search = info0.search
            if "w" in config:
                search = replace(search, fusion_weight=config["w"], adaptive=None)
            else:
                search = replace(
                    search, adaptive=AdaptiveWeight(config["low"], config["high"], config["threshold"], 10)
                )
            for key in ("query_expansion",):
                if key in config:
                    search = replace(search, **{key: config[key]})
            if "rerank" in config:
                rerank = config["rerank"]
                search = replace(search, rerank=None if rerank is None else NeighbourRerank(*rerank))
            model.info = replace(info0, search=search)
            if b0 == 0:
                qq, dd = q, db
            elif b == 0:
                qq = Encoding(q.subvectors, q.codes, q.descriptors[:, :cut] / np.sqrt(1 - b0))
                dd = qq if split.leave_one_out else Encoding(db.subvectors, db.codes, db.descriptors[:, :cut] / np.sqrt(1 - b0))
                model.info = replace(model.info, search=replace(search, descriptor_dim=cut))
            else:
                gdim = config.get("gdim", model.info.descriptor_dim - cut)
                qq = reweighted(q, cut, b0, b, gdim)
                dd = qq if split.leave_one_out else reweighted(db, cut, b0, b, gdim)
                model.info = replace(model.info, search=replace(search, descriptor_dim=cut + gdim))
            rankings = search_rankings(model, qq, dd, split.leave_one_out)
            relevance = np.stack([dl[r] for r in rankings]) == ql[:, None]
            row = {"protocol": args.protocol, "model": args.model.name, **config}
            for name, rows in (("all", slice(None)), ("even", slice(0, None, 2)), ("odd", slice(1, None, 2))):
                report = relevance_report(relevance[rows])
                row[name] = {k: round(report[k], 4) for k in ("P@1", "P@4", "mAP@all")}
            key = json.dumps(config, sort_keys=True)
            per_query[key + "|ap"] = average_precision(relevance)
            per_query[key + "|p4"] = precision_at_k(relevance, 4)
            per_query[key + "|p1"] = precision_at_k(relevance, 1)
            np.savez(args.out.parent / f"perquery-{args.model.stem}-{args.protocol}.npz", **per_query)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(json.dumps(row), file=sys.stderr)


if __name__ == "__main__":
    main()
