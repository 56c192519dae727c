"""Scratch: per-query choice between the default's settings (A) and any-bird settings at b (B) by the
query's known-species probability (prototype softmax on its continuous code)."""
import json
import numpy as np

STEMS = {"other": "DH", "fresh": "FH", "unseen": "UH"}
known = np.load("runs/gate/known.npz")
key = lambda c: json.dumps(c, sort_keys=True)
A = {"b": 0.0, "low": 0.3, "high": 0.5, "threshold": 0.3}
BS = [{"b": b, "gdim": 256, "w": w, "query_expansion": 0, "rerank": [50, 3]} for b in (0.4, 0.5, 0.6, 0.7) for w in (0.1, 0.2, 0.3)]
pq = {p: dict(np.load(f"runs/distill/perquery-{s}-{p}.npz")) for p, s in STEMS.items()}
metric = {"other": "p4", "fresh": "ap", "unseen": "p4"}
for B in BS:
    for t in (0.2, 0.3, 0.37, 0.5, 0.7, 1.01):
        row = []
        for p in ("other", "fresh", "unseen"):
            k = known[p + "|cont"] >= t
            vals = {}
            for m in ("p4", "ap", "p1"):
                v = np.where(k, pq[p][key(A) + "|" + m], pq[p][key(B) + "|" + m])
                vals[m] = (v[0::2].mean(), v.mean())
            row.append(f"{p} {metric[p]} {vals[metric[p]][0]:.4f} ({vals[metric[p]][1]:.4f})" + (f" P@1 {vals['p1'][1]:.4f}" if p == "other" else ""))
        print(f"b {B['b']} w {B['w']} t {t}: " + " | ".join(row))
