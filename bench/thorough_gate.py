"""A per-query choice between settings A and B, emulated from bench/thorough_sweep.py's per-query results:
a query whose 10 best photos by code (ADC) and by the trained descriptor (cosine, whole gallery) share at
least T of them takes A's results, else B's. Run from the repository root after the sweeps of
runs/thorough (docs/results.md, "A thorough model")."""

import json

import numpy as np

from phpq.model import PHPQModel

RUNS = {
    "other": ("runs/thorough/DG.onnx", "DG"),
    "fresh": ("runs/thorough/FG.onnx", "FG"),
    "unseen": ("runs/thorough/UG.onnx", "UG"),
}


def agreement(model_path, npz, k=10):
    m = PHPQModel(model_path, prefer_cuda=False)
    cb = m.codebooks
    d = np.load(npz)
    sv, codes, desc = d["subvectors"], d["codes"], d["descriptors"]
    M = cb.shape[0]
    recon = cb[np.arange(M)[None, :], codes]
    code_s = np.einsum("qmd,nmd->qn", sv, recon) / M
    cut = m.info.descriptor_parts[0][0].stop
    t = desc[:, :cut] / np.linalg.norm(desc[:, :cut], axis=1, keepdims=True)
    desc_s = t @ t.T
    np.fill_diagonal(code_s, -9)
    np.fill_diagonal(desc_s, -9)
    a = np.argsort(-code_s, axis=1)[:, :k]
    b = np.argsort(-desc_s, axis=1)[:, :k]
    return np.array([len(set(x) & set(y)) / k for x, y in zip(a, b, strict=False)])


A = [
    {"b": 0.0, "low": 0.3, "high": 0.5, "threshold": 0.3},
    {"b": 0.2, "low": 0.3, "high": 0.5, "threshold": 0.3},
    {"b": 0.2, "w": 0.4},
]
B = [
    {"b": 0.5, "w": 0.1},
    {"b": 0.5, "w": 0.2},
    {"b": 0.6, "w": 0.2},
    {"b": 0.4, "low": 0.1, "high": 0.3, "threshold": 0.3},
    {"b": 0.5, "low": 0.1, "high": 0.3, "threshold": 0.3},
]


def key(c):
    return json.dumps(c, sort_keys=True)


results = {}
for protocol, (model, stem) in RUNS.items():
    try:
        pq = dict(np.load(f"runs/thorough/perquery-{stem}-{protocol}.npz"))
    except FileNotFoundError:
        continue
    ag = agreement(model, f"runs/thorough/enc-{stem}-{protocol}.query.npz")
    for a in A:
        for b in B:
            if key(a) + "|p4" not in pq or key(b) + "|p4" not in pq:
                continue
            for t in (0.3, 0.4, 0.5):
                known = ag >= t
                row = {}
                for metric in ("p4", "ap", "p1"):
                    v = np.where(known, pq[key(a) + "|" + metric], pq[key(b) + "|" + metric])
                    row[metric] = (
                        round(float(v.mean()), 4),
                        round(float(v[0::2].mean()), 4),
                        round(float(v[1::2].mean()), 4),
                    )
                row["known"] = round(float(known.mean()), 3)
                results.setdefault((key(a), key(b), t), {})[protocol] = row
for (a, b, t), r in results.items():
    print(a, b, t, json.dumps(r))
