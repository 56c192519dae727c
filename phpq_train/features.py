"""On-disk cache of pyramid-pooled backbone features (frozen backbone, several augmented views).

The cache holds, per photo and view, the parameter-free pyramid pooling of every tap (avg and max over
1x1/2x2/4x4 bins), so any head configuration (levels, grids, hybrid mode) trains from one cache.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from phpq.eval.datasets import Photo
from phpq_train.backbone import TAP_NAMES, EfficientNetLiteTaps
from phpq_train.inference import BatchRunner, photo_list_digest, run_over_photos
from phpq_train.model import PyramidLayout, PyramidPooling

log = logging.getLogger(__name__)
CACHE_FORMAT = 1
FULL_GRIDS = (1, 2, 4)


class PyramidFeatureExtractor(nn.Module):
    """Frozen backbone + pyramid pooling over every tap: the cached representation."""

    def __init__(self, backbone: str, input_size: int, pretrained: bool = True):
        super().__init__()
        self.backbone = EfficientNetLiteTaps(backbone, TAP_NAMES, pretrained=pretrained)
        self.layout = PyramidLayout.build(
            self.backbone.taps, self.backbone.channels, self.backbone.strides, input_size, FULL_GRIDS
        )
        self.pooling = PyramidPooling(self.layout)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pooling(self.backbone(images))


@dataclass
class FeatureCache:
    """Memory-mapped pooled features [views, photos, F] in float16; view 0 is the centre crop."""

    features: np.ndarray
    layout: PyramidLayout
    views: int

    def view(self, index: int) -> np.ndarray:
        return self.features[index]


@dataclass(frozen=True)
class CacheRun:
    """How a cache is computed: the views' seed, the weights, the loader and the inference engine."""

    seed: int = 0
    pretrained: bool = True
    batch_size: int = 32
    workers: int = 2
    engine: str = "auto"


def build_or_load_cache(
    photos: list[Photo], cache_root: Path, backbone: str, input_size: int, views: int, run: CacheRun = CacheRun()
) -> FeatureCache:
    """Load the cache for this (backbone, size, views, seed, photo list) or compute it (view by view)."""
    extractor = PyramidFeatureExtractor(backbone, input_size, pretrained=run.pretrained)
    key = {
        "format": CACHE_FORMAT,
        "backbone": backbone,
        "pretrained": run.pretrained,
        "input_size": input_size,
        "views": views,
        "seed": run.seed,
        "photos": photo_list_digest(photos),
        "n_photos": len(photos),
        "grids": list(FULL_GRIDS),
        "feature_size": extractor.layout.size,
    }
    name = f"{backbone}-{input_size}px-{views}views-seed{run.seed}-{key['photos'][:12]}"
    features = cached_views(Path(cache_root) / name, key, extractor, photos, input_size, views, run)
    return FeatureCache(features, extractor.layout, views)


def build_or_load_maps(
    photos: list[Photo],
    cache_root: Path,
    backbone: str,
    input_size: int,
    cut: int,
    views: int,
    run: CacheRun = CacheRun(),
) -> np.ndarray:
    """The output maps of the backbone's stem and first ``cut`` blocks, [views, photos, C, H, W] float16,
    memory-mapped; loaded from the cache or computed (the same views as ``build_or_load_cache``'s)."""
    prefix = EfficientNetLiteTaps(backbone, TAP_NAMES, pretrained=run.pretrained).prefix(cut)
    key = {
        "format": CACHE_FORMAT,
        "backbone": backbone,
        "pretrained": run.pretrained,
        "input_size": input_size,
        "cut": cut,
        "views": views,
        "seed": run.seed,
        "photos": photo_list_digest(photos),
        "n_photos": len(photos),
    }
    name = f"{backbone}-{input_size}px-maps{cut}-{views}views-seed{run.seed}-{key['photos'][:12]}"
    return cached_views(Path(cache_root) / name, key, prefix, photos, input_size, views, run)


def cached_views(
    directory: Path,
    key: dict,
    module: nn.Module,
    photos: list[Photo],
    input_size: int,
    views: int,
    run: CacheRun,
) -> np.ndarray:
    """``module``'s outputs for every view and photo, [views, photos, ...] float16 memory-mapped from
    ``directory/features.npy``: loaded when its ``meta.json`` equals ``key``, else computed view by view."""
    if (directory / "meta.json").is_file() and json.loads((directory / "meta.json").read_text()) == key:
        log.info("feature cache hit: %s", directory)
        return np.load(directory / "features.npy", mmap_mode="r")
    with torch.no_grad():
        shape = (views, len(photos), *module.eval()(torch.zeros(1, 3, input_size, input_size)).shape[1:])
    log.info("building feature cache %s (%d photos x %d views)", directory, len(photos), views)
    shutil.rmtree(directory, ignore_errors=True)
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    features = np.lib.format.open_memmap(tmp / "features.npy", mode="w+", dtype=np.float16, shape=shape)
    runner = BatchRunner(module, input_size, 1, engine=run.engine)
    log.info("feature extraction engine: %s", runner.engine)
    for view in range(views):

        def store(start: int, outputs: list[np.ndarray], target: np.ndarray = features[view]) -> None:
            target[start : start + len(outputs[0])] = outputs[0]

        run_over_photos(
            runner,
            photos,
            input_size,
            view=view,
            seed=run.seed,
            batch_size=run.batch_size,
            workers=run.workers,
            desc=f"caching view {view + 1}/{views}",
            sink=store,
        )
    features.flush()
    del features
    (tmp / "meta.json").write_text(json.dumps(key))
    tmp.rename(directory)
    return np.load(directory / "features.npy", mmap_mode="r")


class MirroredExtractor(nn.Module):
    """The cached representation of the mirror image."""

    def __init__(self, extractor: PyramidFeatureExtractor):
        super().__init__()
        self.extractor = extractor

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor(torch.flip(images, dims=[3]))


def mirror_averaged(
    cache: FeatureCache, photos: list[Photo], cache_dir: Path, backbone: str, input_size: int
) -> FeatureCache:
    """A one-view cache: the mean of the centre crop's pooled features and its mirror image's (what a
    model exported with ``mirror_average`` pools); the mirror images' features are cached on disk."""
    path = Path(cache_dir) / f"{backbone}-{input_size}px-mirror-{photo_list_digest(photos)[:12]}.npy"
    if not path.is_file():
        runner = BatchRunner(MirroredExtractor(PyramidFeatureExtractor(backbone, input_size)), input_size, 1)
        (mirrored,) = run_over_photos(runner, photos, input_size, view=0, desc="mirror images")
        np.save(path, mirrored.astype(np.float16))
    centre = np.asarray(cache.features[0], dtype=np.float32)
    return FeatureCache(((centre + np.load(path).astype(np.float32)) / 2)[None], cache.layout, 1)
