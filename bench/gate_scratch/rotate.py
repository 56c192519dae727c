"""Scratch: does int8 precision cost the known-species side? FH's fresh encodings (view at b 0.4), the gate's
known side, the stored descriptor as it is vs the view rotated by a fixed orthogonal matrix before int8."""
import sys
import numpy as np
from phpq.descriptor import quantize
from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.eval.metrics import relevance_report
from phpq.model import PHPQModel
from phpq.pq import lookup_tables
from phpq.prototypes import ClassPrototypes
from phpq.search import CodeMatrix, GatedRanking, Query

F = PHPQModel("runs/gate/F.onnx", prefer_cuda=False)
s = F.info.search
protos = ClassPrototypes.from_model(F.info)
enc = np.load("runs/distill/enc-FH-fresh.query.npz")
sv, codes, desc = enc["subvectors"], enc["codes"], enc["descriptors"]
split = split_protocol(load_photo_set("../shared/data/cub200/train"), "fresh")
labels = np.array([p.label for p in split.query])
R = np.linalg.qr(np.random.default_rng(0).standard_normal((256, 256)))[0].astype(np.float32)
half = np.hstack([desc[:, :256] * np.sqrt(0.5 / 0.6), desc[:, 256:] * np.sqrt(0.5 / 0.4)])
variants = {"b 0.5 as stored": half, "b 0.5 view rotated": np.hstack([half[:, :256], half[:, 256:] @ R])}
for name, d in variants.items():
    trained = None if d.shape[1] == 256 else GatedRanking(s.gate, protos, (256, 0.5))
    m = CodeMatrix("x", 8, d.shape[1])
    ids = np.arange(len(d))
    m.upsert(ids, np.zeros_like(ids), codes, quantize(d))
    tables = lookup_tables(sv, F.codebooks)
    rel = []
    for i in range(len(d)):
        q = Query(tables[i], d[i], s.fusion_weight, s.query_expansion, F.codebooks, s.adaptive, s.rerank, s.centring, gate=trained)
        r = m.search(q, len(d), exclude={i})
        rel.append(labels[r.image_ids] == labels[i])
    rep = relevance_report(np.stack(rel))
    print(name, {k: round(rep[k], 4) for k in ("P@1", "P@4", "mAP@all")}, flush=True)
