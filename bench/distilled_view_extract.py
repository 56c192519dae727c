# ruff: noqa
"""Scratch for docs/results.md, "The untrained network's view without a second pass" (issue 26); removed once recorded."""

"""Scratch probe: trained-pass pooled statistics and the untrained general features, per photo."""

import sys
import time
from pathlib import Path

import numpy as np
import torch

from phpq.eval.datasets import load_photo_set
from phpq.imaging import load_and_preprocess
from phpq_train.checkpoint import model_from_checkpoint
from phpq_train.export.from_onnx import payload_from_export
from phpq_train.general import attach_to_checkpoint_model

torch.set_num_threads(2)
model_path, data, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
mirror = len(sys.argv) > 4 and sys.argv[4] == "mirror"
payload = payload_from_export(model_path)
model = model_from_checkpoint(payload).eval()
general = attach_to_checkpoint_model(model, payload).eval()
cut = general.first_block
spec = model.config.encode_preprocessing
photos = load_photo_set(data).photos
print(len(photos), "photos, cut", cut, flush=True)
rows = {k: [] for k in ["cut", "s16", "s32", "head", "desc", "gen"]}
t0 = time.time()
with torch.no_grad():
    for start in range(0, len(photos), 32):
        batch = torch.from_numpy(np.stack([load_and_preprocess(p.path, spec) for p in photos[start : start + 32]]))
        if mirror:
            batch = torch.flip(batch, dims=[3])
        maps, cutmaps = model.backbone.forward_split(batch, cut)
        pooled = model.pooling(maps)
        taps = dict(zip(model.backbone.taps, maps))
        for name, m in [("cut", cutmaps), ("s16", taps["stride16"]), ("s32", taps["stride32"]), ("head", taps["head"])]:
            rows[name].append(torch.cat([m.amax(dim=(2, 3)), m.mean(dim=(2, 3))], 1).numpy().astype(np.float32))
        rows["desc"].append(model.head.descriptor(pooled).numpy())
        rows["gen"].append(general.features(cutmaps).numpy())
        if start % 640 == 0:
            print(start, time.time() - t0, flush=True)
np.savez(
    out,
    labels=np.array([p.label for p in photos]),
    paths=np.array([str(p.path) for p in photos]),
    mean=general.mean.numpy(),
    projection=general.projection.numpy(),
    **{k: np.concatenate(v) for k, v in rows.items()},
)
print("done", time.time() - t0)
