# ruff: noqa
"""Scratch for docs/results.md, "The untrained network's view without a second pass" (issue 26); removed once recorded."""

"""Scratch: emulate a per-query choice between settings A and B by code/descriptor agreement."""

import json

import numpy as np

from phpq.model import PHPQModel

RUNS = {
    "other": ("runs/distill/DH.onnx", "DH"),
    "fresh": ("runs/distill/FH.onnx", "FH"),
    "unseen": ("runs/distill/UH.onnx", "UH"),
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
    return np.array([len(set(x) & set(y)) / k for x, y in zip(a, b)])


A = [{"b": 0.0, "low": 0.3, "high": 0.5, "threshold": 0.3}]
B = [{"b": b, "gdim": g, "w": w} for b in (0.4, 0.5, 0.6) for g in (128, 256) for w in (0.3, 0.4)]
key = lambda c: json.dumps(c, sort_keys=True)
results = {}
for protocol, (model, stem) in RUNS.items():
    try:
        pq = dict(np.load(f"runs/distill/perquery-{stem}-{protocol}.npz"))
    except FileNotFoundError:
        continue
    ag = agreement(model, f"runs/distill/enc-{stem}-{protocol}.query.npz")
    for a in A:
        for b in B:
            if key(a) + "|p4" not in pq or key(b) + "|p4" not in pq:
                continue
            for t in (0.1, 0.2, 0.3, 0.4):
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
