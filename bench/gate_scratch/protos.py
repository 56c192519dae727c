"""Scratch: class prototypes for the fresh and unseen checkpoints' exports, from their own training photos
(continuous sub-vectors cached by runs/gate/known.py); a species a checkpoint never trained on gets a zero
prototype (the unseen checkpoint: its 100 untrained species)."""
import sys
from pathlib import Path
import numpy as np
from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.model import PHPQModel
from phpq.prototypes import ClassPrototypes
from phpq_train.export.prototypes import PROTOTYPE_TEMPERATURE, write_prototypes

CUB = Path("../shared/data/cub200/train")
for name, stem, protocol in (("F", "FH", "fresh"), ("U", "UH", "unseen")):
    path = Path(f"runs/gate/{name}.onnx")
    model = PHPQModel(path, prefer_cuda=False)
    split = split_protocol(load_photo_set(CUB), protocol)
    sv = np.load(f"runs/gate/train-{stem}.npz")["subvectors"]
    e = sv.reshape(len(sv), -1)
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    labels = np.array([p.label for p in split.train])
    n = len(model.info.class_names)
    vectors = np.zeros((n, e.shape[1]), np.float32)
    for c in np.unique(labels):
        v = e[labels == c].mean(axis=0)
        vectors[c] = v / np.linalg.norm(v)
    protos = ClassPrototypes(model.info.class_names, vectors, "subvectors", PROTOTYPE_TEMPERATURE, 0.37)
    print(name, write_prototypes(path, path, protos, n)[:12], len(np.unique(labels)), "classes")
