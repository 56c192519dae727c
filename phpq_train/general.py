"""The general descriptor: what the untrained backbone sees, kept beside the trained descriptor.

The recipe trains the backbone's last blocks on CUB's 200 species, and the trained descriptor
specialises to them: on birds outside CUB (the ``other`` protocol) it ranks below the untrained
backbone. The general descriptor is the untrained network's view: the pretrained (ImageNet) weights
of those blocks and the head run again, from the frozen part's maps that the trained blocks also
start from; the global max pooling of the head, centred on training photos and projected to their
principal axes, then turned by a fixed random rotation: it keeps every cosine and spreads the axes'
unequal variance (the first one's is about 13 times the last's) over all dims, so that the largest
value of a stored int8 descriptor no longer sits in the view's first axes and coarsens the trained part
(fresh mAP@all 0.6496 -> 0.6510 on the known-species side; docs/results.md, "A collection gate").
A model exports it one of two ways (``ModelConfig.general_from``):

- ``"untrained_blocks"``: the second pass itself (about 0.6 of the backbone's work again);
- ``"trained_head"``: a linear map of the *trained* head's global max pooling, fitted (ridge
  regression) to the untrained view on the training photos. The trained head keeps most of what the
  untrained one saw (cosine about 0.95 to it on other birds), and no second pass runs.

The exported model's descriptor is the concatenation ``[sqrt(1 - b) * trained, sqrt(b) * general]`` of the
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

FIT_PHOTOS = 3000  # at most this many training photos (evenly spread) fit the centring, projection and map
RIDGE = 0.01  # the head map's ridge penalty per photo, on standardised features (0.003 to 0.1 measured alike)


class GeneralDescriptor(nn.Module):
    """Pretrained blocks ``first_block`` and later plus the head -> global max pooling -> unit vector ->
    centred -> projected to ``dim`` principal axes -> unit vector."""

    source = "untrained_blocks"  # ModelConfig.general_from

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
        return self.project(self.features(maps))

    def encode(self, backbone: EfficientNetLiteTaps, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The backbone's tapped maps of ``images`` and their general descriptor, from the maps at the cut."""
        maps, cut = backbone.forward_split(images, self.first_block)
        return maps, self(cut)

    def metadata(self) -> dict[str, int]:
        """Where its graph starts (the exported model's ``general_descriptor``)."""
        return {"first_block": self.first_block}

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Unit ``features`` -> centred, projected to the principal axes, unit vector."""
        return F.normalize((features - self.mean) @ self.projection.T, dim=1)

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        """Centre on these photos' ``features`` and project to their top principal axes, rotated (with fewer
        photos than dims, only as many axes as photos)."""
        self.mean.copy_(features.mean(dim=0))
        _, _, axes = torch.linalg.svd(features - self.mean, full_matrices=False)
        rows = min(len(axes), self.dim)
        if rows < self.dim:
            log.warning(
                "the general descriptor fitted on %d photos: %d of its %d axes are missing",
                len(features),
                self.dim - rows,
                self.dim,
            )
        self.projection.copy_(spreading_rotation(self.dim)[:, :rows] @ axes[:rows])


def spreading_rotation(dim: int) -> torch.Tensor:
    """A fixed random orthogonal matrix [dim, dim] (seed 0): the same for every model of this size."""
    gaussian = torch.randn(dim, dim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.linalg.qr(gaussian)[0].float()


class HeadGeneralDescriptor(nn.Module):
    """The general descriptor predicted from the trained head: its global max pooling -> one linear map
    (fitted to ``GeneralDescriptor`` on training photos) -> unit vector."""

    source = "trained_head"  # ModelConfig.general_from

    def __init__(self, channels: int, dim: int, weight: float):
        super().__init__()
        if not 0.0 < weight < 1.0:
            raise ValueError(f"general_weight must be between 0 and 1 (exclusive), got {weight}")
        self.weight = weight
        self.register_buffer("linear", torch.zeros(dim, channels))
        self.register_buffer("offset", torch.zeros(dim))

    @property
    def dim(self) -> int:
        return self.linear.shape[0]

    def forward(self, head_maps: torch.Tensor) -> torch.Tensor:
        return F.normalize(head_maps.amax(dim=(2, 3)) @ self.linear.T + self.offset, dim=1)

    def encode(self, backbone: EfficientNetLiteTaps, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The backbone's tapped maps of ``images`` and their general descriptor, from the head's maps."""
        maps = backbone(images)
        return maps, self(maps[-1])

    def metadata(self) -> dict[str, str]:
        """Where its graph starts (the exported model's ``general_descriptor``)."""
        return {"from": self.source}

    @torch.no_grad()
    def fit(self, pooled: torch.Tensor, targets: torch.Tensor) -> None:
        """Ridge regression of ``targets`` (the untrained view) on ``pooled`` (the trained head's global max
        pooling), on standardised features; the standardisation is folded into the map."""
        pooled, targets = pooled.double(), targets.double()
        mean, scale = pooled.mean(dim=0), pooled.std(dim=0) + 1e-6
        standard = (pooled - mean) / scale
        gram = standard.T @ standard + RIDGE * len(pooled) * torch.eye(pooled.shape[1], dtype=torch.float64)
        solution = torch.linalg.solve(gram, standard.T @ (targets - targets.mean(dim=0)))
        self.linear.copy_((solution / scale[:, None]).T)
        self.offset.copy_(targets.mean(dim=0) - (mean / scale) @ solution)


GENERAL_SOURCES = (GeneralDescriptor.source, HeadGeneralDescriptor.source)  # ModelConfig.general_from


def mixed_descriptor(trained: torch.Tensor, general: torch.Tensor, weight: float) -> torch.Tensor:
    """The exported descriptor: both unit vectors, weighted so that dot products mix their cosines."""
    return torch.cat([math.sqrt(1.0 - weight) * trained, math.sqrt(weight) * general], dim=1)


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
) -> GeneralDescriptor | HeadGeneralDescriptor:
    """Give ``model`` (a ``PHPQ``) its general descriptor as ``model.general`` (the exported graph then
    carries it), of the kind its config's ``general_from`` says: the fit ``fitted`` before (an exported
    model's), or fitted on ``photos`` (its training photos, encoded at its encode geometry)."""
    config = model.config
    pretrained = pretrained_backbone(config.backbone)
    first_block = first_trained_block(model.backbone, pretrained)
    general = GeneralDescriptor(pretrained, first_block, config.general_dim, config.general_weight).eval()
    from_head = config.general_from == HeadGeneralDescriptor.source
    if from_head:
        if model.backbone.taps[-1] != "head":
            raise ValueError("general_from = 'trained_head' needs the head among the model's taps")
        head_general = HeadGeneralDescriptor(model.backbone.channels[-1], config.general_dim, config.general_weight)
    if fitted is not None:
        if from_head:
            head_general.linear.copy_(fitted["linear"]), head_general.offset.copy_(fitted["offset"])
        else:
            general.mean.copy_(fitted["mean"]), general.projection.copy_(fitted["projection"])
        model.general = head_general.eval() if from_head else general
        return model.general
    chosen = photos[:: max(1, len(photos) // FIT_PHOTOS)][:FIT_PHOTOS]
    spec = config.encode_preprocessing
    untrained, trained_head = [], []
    for start in range(0, len(chosen), batch_size):
        batch = np.stack([load_and_preprocess(photo.path, spec) for photo in chosen[start : start + batch_size]])
        if from_head:
            maps, cut = model.backbone.forward_split(torch.from_numpy(batch), first_block)
            trained_head.append(maps[-1].amax(dim=(2, 3)))
        else:
            cut = model.backbone.prefix(first_block)(torch.from_numpy(batch))
        untrained.append(general.features(cut))
    general.fit(torch.cat(untrained))
    log.info("general descriptor: blocks %d and later, fitted on %d photos", first_block, len(chosen))
    if from_head:
        head_general.fit(torch.cat(trained_head), general.project(torch.cat(untrained)))
    model.general = head_general.eval() if from_head else general
    return model.general


def attach_to_checkpoint_model(model: nn.Module, payload: dict) -> GeneralDescriptor | HeadGeneralDescriptor:
    """``attach_general_descriptor`` for the model of a checkpoint payload: the fit its export carried
    (``phpq_train.export.from_onnx``) when it is of the model's kind and dims, else one on its training
    photos."""
    fitted = payload.get("general_fit") or {}
    carried = fitted.get("linear" if model.config.general_from == HeadGeneralDescriptor.source else "projection")
    if carried is not None and len(carried) == model.config.general_dim:
        return attach_general_descriptor(model, [], fitted)
    return attach_general_descriptor(model, checkpoint_training_photos(payload))


def checkpoint_training_photos(payload: dict) -> list[Photo]:
    """The photos a checkpoint trained on (its training config's data, split and protocol)."""
    train_config = payload.get("train_config", {})
    photo_set = load_photo_set(Path(train_config.get("data") or ""), train_config.get("split") or "train")
    return split_protocol(photo_set, train_config.get("protocol") or "all").train
