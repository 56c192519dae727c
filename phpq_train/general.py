"""The general descriptor: what the untrained backbone sees, kept beside the trained descriptor.

The recipe trains the backbone's last blocks on CUB's 200 species, and the trained descriptor
specialises to them: on birds outside CUB (the ``other`` protocol) it ranks below the untrained
backbone. The general descriptor runs the pretrained (ImageNet) weights of those blocks and the head
again, from the frozen part's maps that the trained blocks also start from, takes the global max
pooling of the head, centres it on training photos and projects it to their principal axes. The
exported model's descriptor is the concatenation ``[sqrt(1 - b) * trained, sqrt(b) * general]`` of the
two unit vectors (still a unit vector), so the app's scan, storage and collection whitening serve it
unchanged and its dot product is ``(1 - b) * trained cosine + b * general cosine``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from phpq.eval.datasets import Photo, load_photo_set, split_protocol
from phpq.imaging import load_and_preprocess
from phpq_train.backbone import EfficientNetLiteTaps

log = logging.getLogger(__name__)

FIT_PHOTOS = 2000  # at most this many training photos (evenly spread) fit the centring and projection


class GeneralDescriptor(nn.Module):
    """Pretrained blocks ``first_block`` and later plus the head -> global max pooling -> unit vector ->
    centred -> projected to ``dim`` principal axes -> unit vector."""

    def __init__(self, pretrained: EfficientNetLiteTaps, first_block: int, dim: int, weight: float):
        super().__init__()
        if not 0.0 < weight < 1.0:
            raise ValueError(f"general_weight must be between 0 and 1 (exclusive), got {weight}")
        self.first_block, self.weight = first_block, weight
        self.blocks = nn.Sequential(*list(pretrained.blocks)[first_block:])
        self.head = pretrained.head
        channels = self.head[0].out_channels
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("projection", torch.eye(dim, channels))

    @property
    def dim(self) -> int:
        return self.projection.shape[0]

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """Unit global max pooling of the pretrained head, from the maps entering block ``first_block``."""
        return F.normalize(self.head(self.blocks(maps)).amax(dim=(2, 3)), dim=1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return F.normalize((self.features(maps) - self.mean) @ self.projection.T, dim=1)

    def combined(self, trained: torch.Tensor, general: torch.Tensor) -> torch.Tensor:
        """The exported descriptor: both unit vectors, weighted so that dot products mix their cosines."""
        return torch.cat([math.sqrt(1.0 - self.weight) * trained, math.sqrt(self.weight) * general], dim=1)

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        """Centre on these photos' ``features`` and project to their top principal axes (with fewer photos
        than dims, the dims beyond their axes stay zero)."""
        self.mean.copy_(features.mean(dim=0))
        _, _, axes = torch.linalg.svd(features - self.mean, full_matrices=False)
        rows = min(len(axes), self.dim)
        if rows < self.dim:
            log.warning(
                "the general descriptor fitted on %d photos: %d of its %d dims stay zero",
                len(features),
                self.dim - rows,
                self.dim,
            )
        self.projection.zero_()
        self.projection[:rows].copy_(axes[:rows])


def pretrained_backbone(name: str) -> EfficientNetLiteTaps:
    """The ImageNet weights a model's backbone started from."""
    return EfficientNetLiteTaps(name, ("head",), pretrained=True)


def first_trained_block(backbone: EfficientNetLiteTaps, pretrained: EfficientNetLiteTaps) -> int:
    """The first block whose weights differ from the ``pretrained`` ones (beyond float16 rounding); the
    number of blocks when only the head trained or nothing did."""
    for index, (ours, theirs) in enumerate(zip(backbone.blocks, pretrained.blocks, strict=True)):
        for (name, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items(), strict=True):
            if a.is_floating_point() and not torch.allclose(a.float(), b.float(), rtol=2e-3, atol=1e-5):
                log.info("block %d (%s) trained: the general descriptor starts there", index, name)
                return index
    return len(backbone.blocks)


@torch.no_grad()
def attach_general_descriptor(
    model: nn.Module, photos: list[Photo], fitted: dict[str, torch.Tensor] | None = None, batch_size: int = 32
) -> GeneralDescriptor:
    """Give ``model`` (a ``PHPQ``) its general descriptor as ``model.general`` (the exported graph then
    carries it): the centring and projection ``fitted`` before (an exported model's), or fitted on
    ``photos`` (its training photos, encoded at its encode geometry)."""
    config = model.config
    pretrained = pretrained_backbone(config.backbone)
    first_block = first_trained_block(model.backbone, pretrained)
    general = GeneralDescriptor(pretrained, first_block, config.general_dim, config.general_weight).eval()
    if fitted is not None:
        general.mean.copy_(fitted["mean"]), general.projection.copy_(fitted["projection"])
        model.general = general
        return general
    prefix = model.backbone.prefix(first_block).eval()
    chosen = photos[:: max(1, len(photos) // FIT_PHOTOS)][:FIT_PHOTOS]
    spec = config.encode_preprocessing
    features = []
    for start in range(0, len(chosen), batch_size):
        batch = np.stack([load_and_preprocess(photo.path, spec) for photo in chosen[start : start + batch_size]])
        features.append(general.features(prefix(torch.from_numpy(batch))))
    general.fit(torch.cat(features))
    log.info("general descriptor: blocks %d and later, fitted on %d photos", first_block, len(chosen))
    model.general = general
    return general


def attach_to_checkpoint_model(model: nn.Module, payload: dict) -> GeneralDescriptor:
    """``attach_general_descriptor`` for the model of a checkpoint payload: the fit its export carried
    (``phpq_train.export.from_onnx``) when it has the model's dims, else one on its training photos."""
    fitted = payload.get("general_fit")
    if fitted is not None and len(fitted["projection"]) == model.config.general_dim:
        return attach_general_descriptor(model, [], fitted)
    return attach_general_descriptor(model, checkpoint_training_photos(payload))


def checkpoint_training_photos(payload: dict) -> list[Photo]:
    """The photos a checkpoint trained on (its training config's data, split and protocol)."""
    train_config = payload.get("train_config", {})
    photo_set = load_photo_set(Path(train_config.get("data") or ""), train_config.get("split") or "train")
    return split_protocol(photo_set, train_config.get("protocol") or "all").train
