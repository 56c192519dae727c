"""Scratch: each protocol's photos' known-species probability (prototype softmax), per photo."""
import sys
from pathlib import Path
import numpy as np
from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.model import PHPQModel
from phpq.prototypes import ClassPrototypes, model_embeddings

RUNS = {"other": ("runs/distill/DH.onnx", "DH", None), "fresh": ("runs/distill/FH.onnx", "FH", "fresh"),
        "unseen": ("runs/distill/UH.onnx", "UH", "unseen")}
CUB = Path("../shared/data/cub200/train")


def probs(p: ClassPrototypes, emb: np.ndarray) -> np.ndarray:
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    logits = e @ p.vectors.T / p.temperature
    logits -= logits.max(axis=1, keepdims=True)
    ex = np.exp(logits)
    return (ex / ex.sum(axis=1, keepdims=True)).max(axis=1)


out = {}
for protocol, (path, stem, train_protocol) in RUNS.items():
    model = PHPQModel(Path(path), prefer_cuda=False)
    if train_protocol is None:
        protos = ClassPrototypes.from_model(model.info)
    else:
        cache = Path(f"runs/gate/train-{stem}.npz")
        split = split_protocol(load_photo_set(CUB), train_protocol)
        if cache.exists():
            sv = np.load(cache)["subvectors"]
        else:
            sv = model.encode_paths([p.path for p in split.train], threads=2).subvectors
            np.savez(cache, subvectors=sv)
        labels = np.array([p.label for p in split.train])
        names = load_photo_set(CUB).class_names
        e = sv.reshape(len(sv), -1)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        vec = np.stack([e[labels == c].mean(axis=0) for c in np.unique(labels)])
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        protos = ClassPrototypes([names[c] for c in np.unique(labels)], vec.astype(np.float32), "subvectors", 0.0625, 0.37)
    q = np.load(f"runs/distill/enc-{stem}-{protocol}.query.npz")
    sv, codes = q["subvectors"], q["codes"]
    cb = model.codebooks
    recon = cb[np.arange(cb.shape[0])[None, :], codes]
    cont = probs(protos, sv.reshape(len(sv), -1))
    rec = probs(protos, recon.reshape(len(recon), -1))
    out[protocol + "|cont"] = cont
    out[protocol + "|recon"] = rec
    for t in (0.2, 0.3, 0.37, 0.5):
        print(protocol, t, "known fraction cont %.3f recon %.3f" % ((cont >= t).mean(), (rec >= t).mean()), flush=True)
np.savez("runs/gate/known.npz", **out)
