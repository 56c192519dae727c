"""PHPQ model: multi-level taps -> pyramid hybrid pooling -> fusion/projection -> product quantizer.

Design choices that the paper's abstract leaves open are ours (see ../shared/docs/phpq.md and the
README): every one is a field of :class:`ModelConfig`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from phpq.fusion import AdaptiveWeight, CollectionCentring, CollectionGate, NeighbourRerank
from phpq.imaging import Preprocessing
from phpq.zoom import Zoom
from phpq_train.backbone import EfficientNetLiteTaps
from phpq_train.general import GENERAL_SOURCES, mixed_descriptor

HYBRID_MODES = ("sum", "concat", "avg", "max")
DESCRIPTOR_POOLINGS = ("max", "avg", "both")
# The fields of ModelConfig that only say how the app ranks (nothing trains them; general_weight also
# changes the exported graph, where it mixes the general descriptor into the descriptor).
SEARCH_FIELDS = (
    "fusion_weight",
    "adaptive_weight",
    "neighbour_rerank",
    "collection_centring",
    "collection_gate",
    "query_expansion",
    "general_weight",
)


@dataclass(kw_only=True)
class ModelConfig:
    """Architecture of a PHPQ model. DECISION fields are our reading of the paper, kept configurable.

    The values come from the recipe (phpq_train/recipes/cub_cpu.toml); only ``n_classes``, which a run
    derives from its training photos, has a default.
    """

    backbone: str  # efficientnet_lite0/1/2
    input_size: int  # training crops; the pyramid's bins are laid out for maps of this input
    # Photos are encoded (index, queries, evaluation of photos, the exported model) at this input size,
    # short side resized to encode_resize_ratio times it, then centre-cropped: a network trained on random
    # resized crops sees birds larger than a centre crop of the same size shows them, so it ranks better
    # from a larger input (docs/results.md, "What each move did"). The bins stay those of input_size.
    encode_size: int
    encode_resize_ratio: float
    taps: tuple[str, ...]  # DECISION: a subset of backbone.TAP_NAMES (strides 8, 16, 32 and the head)
    grids: tuple[int, ...]  # DECISION: pyramid bins per side; 4 is dropped on maps of 8 px or less
    hybrid: str  # DECISION: learned per-channel mix of max and avg ("sum"), or "concat", "avg", "max"
    dim: int  # D, the fused feature that is quantized
    n_subspaces: int  # M
    n_codewords: int  # K (log2 K bits per sub-space)
    alpha: float  # softmax temperature of the soft assignment
    topk: int  # partial codebook attention: softmax over the top-k codewords (k = K is the full softmax)
    dropout: float
    # The general-purpose descriptor beside the code: global pooling of some taps, centred, projected to
    # descriptor_dim and L2-normalised (see DescriptorHead).
    descriptor_dim: int
    descriptor_taps: tuple[str, ...]
    descriptor_pooling: str  # global max, global average, or both (each part L2-normalised)
    fusion_weight: float  # w in w * ADC / M + (1 - w) * descriptor cosine; chosen on the dev protocols
    # The exported descriptor also carries the untrained backbone's view (phpq_train.general), general_dim
    # principal axes of it (0: none), weighted general_weight in the descriptor's cosine; general_from says
    # how the graph computes it: "untrained_blocks" (a second pass) or "trained_head" (a map fitted to it).
    general_dim: int
    general_weight: float
    general_from: str
    # The per-query weight (phpq.fusion.AdaptiveWeight's low, high, threshold and k; {} for none):
    # fusion_weight is then the first scan's weight only.
    adaptive_weight: dict[str, float]
    # The best photos re-ranked by their neighbours among them (phpq.fusion.NeighbourRerank's depth and
    # neighbours; {} for none).
    neighbour_rerank: dict[str, int]
    # Descriptors compared after subtracting the searched collection's mean, optionally whitened
    # (phpq.fusion.CollectionCentring's prior and whitening; {} for none).
    collection_centring: dict[str, float]
    # Where most of a collection's photos are not of its species, the model's own search ranks as for birds
    # from elsewhere (phpq.fusion.CollectionGate's probability, fraction, weight, query_expansion and rerank;
    # {} for never). It needs class prototypes of the code in the model (python -m phpq_train.export.prototypes).
    collection_gate: dict
    query_expansion: int  # the app ranks by the mean similarity to the query and its this many best photos
    mirror_average: bool  # the exported model encodes each photo and its mirror image, pooled features averaged
    # A photo whose bird looks small is encoded again from a crop around it (phpq.zoom.Zoom's max_side and
    # margin; {} for never).
    zoom: dict[str, float]
    n_classes: int = 0  # derived by the run from its training photos, not a recipe value

    def __post_init__(self) -> None:
        self.taps = tuple(self.taps)
        self.grids = tuple(self.grids)
        self.descriptor_taps = tuple(self.descriptor_taps)
        if self.descriptor_pooling not in DESCRIPTOR_POOLINGS:
            raise ValueError(
                f"descriptor_pooling must be one of {DESCRIPTOR_POOLINGS}, got {self.descriptor_pooling!r}"
            )
        if not set(self.descriptor_taps) <= set(self.taps):
            raise ValueError(f"descriptor_taps {self.descriptor_taps} must be among the taps {self.taps}")
        if self.general_from not in GENERAL_SOURCES:
            raise ValueError(f"general_from must be one of {GENERAL_SOURCES}, got {self.general_from!r}")
        if self.hybrid not in HYBRID_MODES:
            raise ValueError(f"hybrid must be one of {HYBRID_MODES}, got {self.hybrid!r}")
        Preprocessing(self.encode_size, self.encode_resize_ratio)  # raises ValueError when out of range
        if self.dim % self.n_subspaces:
            raise ValueError(f"dim {self.dim} is not divisible by n_subspaces {self.n_subspaces}")
        if not 1 <= self.topk <= self.n_codewords:
            raise ValueError(f"topk must be in [1, {self.n_codewords}], got {self.topk}")
        AdaptiveWeight.from_json(json.dumps(self.adaptive_weight))  # raises ValueError when malformed
        NeighbourRerank.from_json(json.dumps(self.neighbour_rerank))
        CollectionCentring.from_json(json.dumps(self.collection_centring))
        CollectionGate.from_json(json.dumps(self.collection_gate))
        Zoom.from_json(json.dumps(self.zoom))

    @property
    def encode_preprocessing(self) -> Preprocessing:
        """The test-time geometry photos are encoded at (the exported model's metadata says the same)."""
        return Preprocessing(self.encode_size, self.encode_resize_ratio)

    @property
    def bits(self) -> int:
        return self.n_subspaces * int(math.log2(self.n_codewords))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Level:
    """One tapped map: its name, channels and the pyramid grids pooled on it."""

    name: str
    channels: int
    grids: tuple[int, ...]

    @property
    def bins(self) -> int:
        return sum(g * g for g in self.grids)


@dataclass(frozen=True)
class PyramidLayout:
    """Layout of a pooled vector: per level, the avg part then the max part, each [channels, bins]."""

    levels: tuple[Level, ...] = field(default_factory=tuple)

    @classmethod
    def build(
        cls,
        taps: tuple[str, ...],
        channels: tuple[int, ...],
        strides: tuple[int, ...],
        input_size: int,
        grids: tuple[int, ...],
    ) -> PyramidLayout:
        levels = []
        for tap, width, stride in zip(taps, channels, strides, strict=True):
            map_size = math.ceil(input_size / stride)
            # A g x g grid needs bins of more than 2 px: 4x4 is dropped on the 7 x 7 maps at 224 px and the
            # 8 x 8 maps at 256 px, so both sizes pool the same bins.
            levels.append(Level(tap, width, tuple(g for g in grids if g == 1 or map_size > 2 * g)))
        return cls(tuple(levels))

    @property
    def size(self) -> int:
        return sum(2 * level.channels * level.bins for level in self.levels)

    def offsets(self) -> dict[str, int]:
        offsets, start = {}, 0
        for level in self.levels:
            offsets[level.name] = start
            start += 2 * level.channels * level.bins
        return offsets

    def gather_index(self, sub: PyramidLayout) -> torch.Tensor:
        """Indices into a vector of this layout that give a vector of the ``sub`` layout."""
        offsets = self.offsets()
        own = {level.name: level for level in self.levels}
        pieces = []
        for level in sub.levels:
            full = own[level.name]
            bin_starts = _bin_starts(full.grids)
            bins = torch.cat([torch.arange(bin_starts[g], bin_starts[g] + g * g) for g in level.grids])
            channel = torch.arange(full.channels)[:, None] * full.bins
            for part in range(2):  # avg then max
                base = offsets[level.name] + part * full.channels * full.bins
                pieces.append((base + channel + bins[None, :]).reshape(-1))
        return torch.cat(pieces)

    def global_average_index(self, tap: str = "head") -> torch.Tensor:
        """Indices of the plain global-average-pooled feature of ``tap`` (the frozen baseline)."""
        return self._global_index(tap)[0]

    def global_max_index(self, tap: str = "head") -> torch.Tensor:
        """Indices of the global-max-pooled feature of ``tap``."""
        return self._global_index(tap)[1]

    def _global_index(self, tap: str) -> tuple[torch.Tensor, torch.Tensor]:
        level = next(level for level in self.levels if level.name == tap)
        index = self.gather_index(PyramidLayout((Level(tap, level.channels, (1,)),)))
        return index[: level.channels], index[level.channels :]


def _bin_starts(grids: tuple[int, ...]) -> dict[int, int]:
    starts, start = {}, 0
    for g in grids:
        starts[g] = start
        start += g * g
    return starts


class PyramidPooling(nn.Module):
    """Parameter-free pyramid of max and average pooling over g x g bins of every tapped map.

    Bins follow adaptive pooling's boundaries but are written as static slices, which export to ONNX
    for any map size.
    """

    def __init__(self, layout: PyramidLayout):
        super().__init__()
        self.layout = layout

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for level, feature_map in zip(self.layout.levels, maps, strict=True):
            height, width = feature_map.shape[-2:]
            averages, maxima = [], []
            for g in level.grids:
                for row in range(g):
                    top, bottom = (row * height) // g, ((row + 1) * height + g - 1) // g
                    for col in range(g):
                        left, right = (col * width) // g, ((col + 1) * width + g - 1) // g
                        region = feature_map[:, :, top:bottom, left:right]
                        averages.append(region.mean(dim=(2, 3)))
                        maxima.append(region.amax(dim=(2, 3)))
            parts.append(torch.stack(averages, dim=2).flatten(1))
            parts.append(torch.stack(maxima, dim=2).flatten(1))
        return torch.cat(parts, dim=1)


class HybridFusion(nn.Module):
    """Combine max and avg bins per level, normalise each level, concatenate and project to D."""

    def __init__(self, layout: PyramidLayout, mode: str, dim: int, dropout: float):
        super().__init__()
        self.layout = layout
        self.mode = mode
        self.split_sizes = [level.channels * level.bins for level in layout.levels for _ in range(2)]
        self.mix_logits = nn.ParameterList(
            [nn.Parameter(torch.zeros(level.channels, 1)) for level in layout.levels] if mode == "sum" else []
        )
        widths = [size * (2 if mode == "concat" else 1) for size in self.split_sizes[::2]]
        self.level_norms = nn.ModuleList([nn.LayerNorm(width, elementwise_affine=False) for width in widths])
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(sum(widths), dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(pooled, self.split_sizes, dim=1)
        fused = []
        for index, level in enumerate(self.layout.levels):
            average, maximum = chunks[2 * index], chunks[2 * index + 1]
            if self.mode == "sum":
                weight = torch.sigmoid(self.mix_logits[index])  # [C, 1], broadcast over bins
                shape = (-1, level.channels, level.bins)
                combined = (weight * maximum.view(shape) + (1 - weight) * average.view(shape)).flatten(1)
            elif self.mode == "concat":
                combined = torch.cat([average, maximum], dim=1)
            else:
                combined = average if self.mode == "avg" else maximum
            fused.append(self.level_norms[index](combined))
        return self.projection(self.dropout(torch.cat(fused, dim=1)))


@dataclass
class Quantized:
    """Product quantizer outputs. Sub-vectors and codewords are L2-normalised per sub-space."""

    subvectors: torch.Tensor  # [B, M, d]
    similarities: torch.Tensor  # [B, M, K]
    soft: torch.Tensor  # [B, M, d], attention-weighted codewords
    hard: torch.Tensor  # [B, M, d], nearest codewords
    codes: torch.Tensor  # [B, M], argmax of the similarities


def split_subvectors(features: torch.Tensor, n_subspaces: int) -> torch.Tensor:
    """[B, D] -> sub-vectors [B, M, D/M], each L2-normalised (intra-normalisation)."""
    return F.normalize(features.view(features.shape[0], n_subspaces, -1), dim=-1)


class ProductQuantizer(nn.Module):
    """Learnable product quantizer with intra-normalisation and partial codebook attention."""

    def __init__(self, dim: int, n_subspaces: int, n_codewords: int, alpha: float, topk: int):
        super().__init__()
        self.n_subspaces = n_subspaces
        self.n_codewords = n_codewords
        self.alpha = alpha
        self.topk = topk
        self.codebooks = nn.Parameter(torch.randn(n_subspaces, n_codewords, dim // n_subspaces))

    def normalized_codebooks(self) -> torch.Tensor:
        return F.normalize(self.codebooks, dim=-1)

    def split(self, features: torch.Tensor) -> torch.Tensor:
        """[B, D] -> L2-normalised sub-vectors [B, M, d]."""
        return split_subvectors(features, self.n_subspaces)

    def attention(self, similarities: torch.Tensor) -> torch.Tensor:
        """Softmax of alpha * similarity over the top-k codewords of each sub-codebook (others get 0)."""
        logits = self.alpha * similarities
        if self.topk < self.n_codewords:
            values, indices = logits.topk(self.topk, dim=-1)
            logits = torch.full_like(logits, float("-inf")).scatter(-1, indices, values)
        return torch.softmax(logits, dim=-1)

    def forward(self, features: torch.Tensor) -> Quantized:
        subvectors = self.split(features)
        codebooks = self.normalized_codebooks()
        similarities = torch.einsum("bmd,mkd->bmk", subvectors, codebooks)
        soft = torch.einsum("bmk,mkd->bmd", self.attention(similarities), codebooks)
        codes = similarities.argmax(dim=-1)
        hard = codebooks[torch.arange(self.n_subspaces, device=codes.device)[None, :], codes]
        return Quantized(subvectors, similarities, soft, hard, codes)

    @torch.no_grad()
    def init_from_kmeans(self, features: torch.Tensor, iterations: int = 20, seed: int = 0) -> None:
        """Initialise every sub-codebook by spherical k-means on sub-vectors of ``features`` [N, D]."""
        generator = torch.Generator().manual_seed(seed)
        subvectors = self.split(features.float().cpu())
        n = subvectors.shape[0]
        for m in range(self.n_subspaces):
            data = subvectors[:, m]
            centroids = _kmeans_plus_plus(data, self.n_codewords, generator)
            for _ in range(iterations):
                assignment = (data @ centroids.T).argmax(dim=1)
                sums = torch.zeros_like(centroids).index_add_(0, assignment, data)
                counts = torch.bincount(assignment, minlength=self.n_codewords)
                empty = counts == 0
                sums[empty] = data[torch.randint(n, (int(empty.sum()),), generator=generator)]
                centroids = F.normalize(sums, dim=-1)
            self.codebooks[m].copy_(centroids.to(self.codebooks.device))


def _kmeans_plus_plus(data: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding on the unit sphere (distance 1 - cosine); repeats points when N < k."""
    n = data.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    distance = 1 - data @ data[chosen[0]]
    for _ in range(1, k):
        weights = distance.clamp_min(0) ** 2
        pick = (
            torch.multinomial(weights, 1, generator=generator)
            if weights.sum() > 0
            else torch.randint(n, (1,), generator=generator)
        )
        chosen.append(int(pick))
        distance = torch.minimum(distance, 1 - data @ data[chosen[-1]])
    return data[chosen].clone()


class CosineClassifier(nn.Module):
    """Class prototypes compared to normalised features by cosine (scale and margin live in the loss)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.prototypes = nn.Parameter(torch.randn(n_classes, dim) * 0.01)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features, dim=-1) @ F.normalize(self.prototypes, dim=-1).T


class DescriptorHead(nn.Module):
    """The general-purpose descriptor: global max and/or average pooling of some taps (each part
    L2-normalised), centred on the training photos' mean, projected to E dims and L2-normalised.

    ``features`` is the frozen input geometry (the distillation teacher); the projection starts as the
    training photos' principal axes (``init_from_pca``) and is then trained with a metric loss.
    """

    def __init__(self, layout: PyramidLayout, taps: tuple[str, ...], pooling: str, dim: int):
        super().__init__()
        channels = {level.name: level.channels for level in layout.levels}
        indices, self.part_sizes = [], []
        for tap in taps:
            if pooling in ("max", "both"):
                indices.append(layout.global_max_index(tap))
                self.part_sizes.append(channels[tap])
            if pooling in ("avg", "both"):
                indices.append(layout.global_average_index(tap))
                self.part_sizes.append(channels[tap])
        self.register_buffer("index", torch.cat(indices))
        self.register_buffer("mean", torch.zeros(sum(self.part_sizes)))
        self.projection = nn.Linear(sum(self.part_sizes), dim, bias=False)

    def features(self, pooled: torch.Tensor) -> torch.Tensor:
        """The frozen input of the descriptor: the chosen global poolings, each part L2-normalised, centred."""
        parts = torch.split(pooled[:, self.index], self.part_sizes, dim=1)
        return torch.cat([F.normalize(part, dim=1) for part in parts], dim=1) - self.mean

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.project(self.features(pooled))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The descriptor of already computed ``features``."""
        return F.normalize(self.projection(features), dim=-1)

    @torch.no_grad()
    def init_from_pca(self, pooled: torch.Tensor) -> None:
        """Centre on these photos and start the projection as their top principal axes."""
        self.mean.zero_()
        inputs = self.features(pooled.float())
        self.mean.copy_(inputs.mean(dim=0))
        _, _, axes = torch.linalg.svd(inputs - self.mean, full_matrices=False)
        rows = min(len(axes), self.projection.out_features)  # fewer photos than dims: the rest stay random
        self.projection.weight[:rows].copy_(axes[:rows])


@dataclass
class HeadOutput:
    embedding: torch.Tensor  # [B, D] continuous fused feature (before intra-normalisation)
    quantized: Quantized
    cosine_continuous: torch.Tensor  # [B, classes] cosine to the class prototypes
    cosine_quantized: torch.Tensor
    descriptor: torch.Tensor  # [B, E] L2-normalised general-purpose descriptor
    cosine_descriptor: torch.Tensor  # [B, classes] cosine to the descriptor's own class prototypes
    descriptor_input: torch.Tensor  # [B, F] the frozen geometry the descriptor is distilled from


class PHPQHead(nn.Module):
    """Everything after the pooling: fusion/projection, quantizer and the training-only classifier."""

    def __init__(self, config: ModelConfig, layout: PyramidLayout):
        super().__init__()
        self.fusion = HybridFusion(layout, config.hybrid, config.dim, config.dropout)
        self.quantizer = ProductQuantizer(config.dim, config.n_subspaces, config.n_codewords, config.alpha, config.topk)
        self.classifier = CosineClassifier(config.dim, max(1, config.n_classes))
        self.descriptor = DescriptorHead(
            layout, config.descriptor_taps, config.descriptor_pooling, config.descriptor_dim
        )
        self.descriptor_classifier = CosineClassifier(config.descriptor_dim, max(1, config.n_classes))

    def forward(self, pooled: torch.Tensor) -> HeadOutput:
        embedding = self.fusion(pooled)
        quantized = self.quantizer(embedding)
        descriptor_input = self.descriptor.features(pooled)
        descriptor = self.descriptor.project(descriptor_input)
        return HeadOutput(
            embedding,
            quantized,
            self.classifier(quantized.subvectors.flatten(1)),
            self.classifier(quantized.soft.flatten(1)),
            descriptor,
            self.descriptor_classifier(descriptor),
            descriptor_input,
        )


class PHPQ(nn.Module):
    """Backbone taps + pyramid pooling + head. ``encode`` gives what retrieval needs."""

    def __init__(self, config: ModelConfig, pretrained: bool = True):
        super().__init__()
        self.config = config
        self.backbone = EfficientNetLiteTaps(config.backbone, config.taps, pretrained=pretrained)
        self.layout = PyramidLayout.build(
            self.backbone.taps, self.backbone.channels, self.backbone.strides, config.input_size, config.grids
        )
        self.pooling = PyramidPooling(self.layout)
        self.head = PHPQHead(config, self.layout)

    def pool(self, images: torch.Tensor) -> torch.Tensor:
        return self.pooling(self.backbone(images))

    def forward(self, images: torch.Tensor) -> HeadOutput:
        return self.head(self.pool(images))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images -> (normalised sub-vectors [B, M, d], codes [B, M], descriptors [B, E])."""
        pooled = self.pool(images)
        quantized = self.head.quantizer(self.head.fusion(pooled))
        return quantized.subvectors, quantized.codes, self.head.descriptor(pooled)


class PartialNetwork(nn.Module):
    """What the partial trainer trains: the backbone's blocks from ``cut`` on and its head (the model's own
    modules, so the checkpoint holds them), the pyramid pooling of the taps they compute, and the PHPQ head.

    ``forward(pooled)`` runs the head on a whole pooled vector; ``forward(prefix, maps)`` first pools the
    later taps from the maps of block ``cut - 1`` and appends them to ``prefix``, the pooled part of the
    taps before the cut (the layout lists taps shallow to deep). Batch-norm statistics stay frozen.
    """

    def __init__(self, model: PHPQ, cut: int):
        super().__init__()
        self.backbone, self.head, self.cut = model.backbone, model.head, cut
        later = len(model.backbone.taps_from(cut))
        levels = model.layout.levels
        self.prefix_size = PyramidLayout(levels[: len(levels) - later]).size
        self.pooling = PyramidPooling(PyramidLayout(levels[len(levels) - later :]))

    def pool(self, prefix: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """The whole pooled vector from the earlier taps' pooled part and the maps at the cut."""
        return torch.cat([prefix, self.pooling(self.backbone.forward_from(maps, self.cut))], dim=1)

    def forward(self, pooled: torch.Tensor, maps: torch.Tensor | None = None) -> HeadOutput:
        return self.head(pooled if maps is None else self.pool(pooled, maps))

    def train(self, mode: bool = True) -> PartialNetwork:
        super().train(mode)
        for module in self.backbone.modules():  # small batches of few classes: keep ImageNet's statistics
            if isinstance(module, nn.BatchNorm2d):
                module.eval()
        return self


class RetrievalEncoder(nn.Module):
    """Images -> (sub-vectors [B, M, d], codes [B, M], descriptors [B, E], attention [B, g, g]): what the app's
    ONNX model computes (the attention map is the deepest tapped map's channel mean, which ``phpq.zoom`` reads).

    The normalised codebooks are baked into a buffer named ``phpq_codebooks``, which becomes an ONNX
    initializer of that name, so the app can read them without running the graph.

    With the model's ``mirror_average`` each photo is encoded from itself and its mirror image in one
    backbone pass of twice the batch, and their pooled features are averaged (a photo and its mirror
    image then get the same code and descriptor).
    """

    def __init__(self, model: PHPQ):
        super().__init__()
        self.general = getattr(model, "general", None)  # phpq_train.general.attach_general_descriptor
        self.backbone = model.backbone
        self.pooling = model.pooling
        self.fusion = model.head.fusion
        self.descriptor = model.head.descriptor
        self.n_subspaces = model.config.n_subspaces
        self.mirror_average = model.config.mirror_average
        self.register_buffer("phpq_codebooks", model.head.quantizer.normalized_codebooks().detach().clone())

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        batch = images.shape[0]
        if self.mirror_average:
            images = torch.cat([images, torch.flip(images, dims=[3])])
        if self.general is None:
            maps, general = self.backbone(images), None
        else:
            maps, general = self.general.encode(self.backbone, images)
        pooled = self.pooling(maps)
        attention = maps[-1][:batch].mean(dim=1)  # the deepest map's channel mean: where the bird is (phpq.zoom)
        if self.mirror_average:
            pooled = pooled.reshape(2, -1, pooled.shape[-1]).mean(dim=0)
            general = None if general is None else F.normalize(general.reshape(2, -1, general.shape[-1]).mean(0), dim=1)
        subvectors = split_subvectors(self.fusion(pooled), self.n_subspaces)
        similarities = torch.matmul(subvectors.transpose(0, 1), self.phpq_codebooks.transpose(1, 2))  # [M, B, K]
        descriptor = self.descriptor(pooled)
        if general is not None:
            descriptor = mixed_descriptor(descriptor, general, self.general.weight)
        return subvectors, similarities.argmax(dim=-1).transpose(0, 1), descriptor, attention
