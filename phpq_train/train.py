"""The PHPQ training loop, shared by three trainers: cached (frozen backbone, CPU), partial (cached, then the
backbone's last blocks too, CPU) and finetune (end to end, GPU). DDP-ready; checkpoint I/O lives in
``phpq_train.checkpoint``."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from phpq.eval.datasets import Photo, PhotoSet, load_photo_set, split_protocol, with_extra_species
from phpq.model import Encoding
from phpq_train.backbone import EfficientNetLiteTaps
from phpq_train.checkpoint import load_checkpoint, save_checkpoint
from phpq_train.config import TrainConfig
from phpq_train.data import PhotoDataset
from phpq_train.evaluate import fused_report
from phpq_train.features import CacheRun, FeatureCache, build_or_load_cache, build_or_load_maps
from phpq_train.inference import BatchRunner, run_over_photos
from phpq_train.losses import phpq_loss
from phpq_train.model import PHPQ, HeadOutput, PartialNetwork, RetrievalEncoder

log = logging.getLogger(__name__)
Batch = tuple[torch.Tensor, ...]
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# Devices, distribution


@dataclass
class Runtime:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(device: str = "auto") -> Runtime:
    """Pick the device and join a torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, else gloo)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        selected = torch.device("cuda", local_rank)
    else:
        selected = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Runtime(selected, rank, world_size)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------------
# Schedules, logging, plots


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def plot_history(history: list[dict], path: Path) -> None:
    """PNG of the training loss and validation mAP per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (loss_axis, map_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot([h["epoch"] for h in history], [h["loss"] for h in history], marker="o")
    loss_axis.set(xlabel="epoch", ylabel="training loss", title="loss")
    evaluated = [h for h in history if "mAP@all" in h]
    map_axis.plot([h["epoch"] for h in evaluated], [h["mAP@all"] for h in evaluated], marker="o", label="ADC")
    if evaluated and "continuous_mAP@all" in evaluated[0]:
        map_axis.plot(
            [h["epoch"] for h in evaluated],
            [h["continuous_mAP@all"] for h in evaluated],
            marker="s",
            label="continuous",
        )
    map_axis.set(xlabel="epoch", ylabel="mAP@all", title="validation mAP")
    map_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ----------------------------------------------------------------------------------------------------
# Encoding for evaluation


def encode_photos(
    model: PHPQ, photos: list[Photo], device: torch.device, engine: str = "auto", batch_size: int = 32, workers: int = 2
) -> Encoding:
    """Encode photos as the exported model does, at the model's encode size and resize ratio (through ONNX
    Runtime on CPU when present), without zooming in on small birds (``phpq.zoom``: the app's models only)."""
    geometry = model.config.encode_preprocessing
    runner = BatchRunner(RetrievalEncoder(model.eval()), geometry.input_size, 4, engine=engine, device=device)
    subvectors, codes, descriptors, _ = run_over_photos(
        runner,
        photos,
        geometry.input_size,
        batch_size=batch_size,
        workers=workers,
        desc="encoding",
        resize_ratio=geometry.resize_ratio,
    )
    return Encoding(
        subvectors.astype(np.float32),
        codes.astype(np.uint8 if model.config.n_codewords <= 256 else np.int64),
        descriptors.astype(np.float32),
    )


FUSION_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # logged at every evaluation


# ----------------------------------------------------------------------------------------------------
# The trainers


def joined_over_photos(caches: list[np.ndarray]) -> np.ndarray:
    """Caches of photo sets, [views, photos, ...] each, as one in their order: a single one as it is
    (memory-mapped), several read into memory and joined."""
    return caches[0] if len(caches) == 1 else np.concatenate(caches, axis=1)


class Trainer(ABC):
    """The shared loop: data split, model, optimizer, epochs, evaluation, log and checkpoint.

    A subclass supplies the batches and the model parts that differ between the cached and the finetune
    path. The caller's config is never changed: the trainer keeps its own copy, with ``model.n_classes``
    taken from the training photos.
    """

    def __init__(self, config: TrainConfig, runtime: Runtime | None = None):
        self.runtime = runtime or setup_runtime(config.device)
        self.output = Path(config.output)
        if self.runtime.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
        seed_everything(config.seed + self.runtime.rank)
        self.photo_set: PhotoSet = load_photo_set(Path(config.data), config.split)
        split = split_protocol(self.photo_set, config.protocol)
        self.class_names = self.photo_set.class_names
        self.extra_photos: list[Photo] = []  # photos of config.extra_data that train too
        self.descriptor_classes: int | None = None  # the descriptor's classifier learns only these classes
        if config.extra_data:
            own_classes = split.train_classes
            if not config.extra_trains_descriptor:
                self.descriptor_classes = own_classes
            extra = load_photo_set(Path(config.extra_data))
            split, self.class_names, self.extra_photos = with_extra_species(
                split, self.class_names, extra, config.extra_species
            )
            added = split.train_classes - own_classes
            log.info("%d photos of %d species of %s train too", len(self.extra_photos), added, config.extra_data)
        self.split = split
        self.config = replace(config, model=replace(config.model, n_classes=self.split.train_classes))
        self.model = PHPQ(self.config.model, pretrained=config.pretrained).to(self.runtime.device)
        self.amp = config.amp and self.runtime.device.type == "cuda"
        self.history: list[dict] = []
        self.metrics: dict[str, float] = {}  # the last evaluation's
        self.start_epoch = 0
        self._prepare()
        self.trainable = self._trainable()
        self.wrapped = (
            DistributedDataParallel(
                self.trainable,
                device_ids=[self.runtime.device.index] if self.runtime.device.type == "cuda" else None,
            )
            if self.runtime.distributed
            else self.trainable
        )
        self.optimizer = self._build_optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    # -- what a path supplies ------------------------------------------------------------------------
    @abstractmethod
    def _prepare(self) -> None:
        """Build the training data (the model exists already)."""

    @abstractmethod
    def _trainable(self) -> nn.Module:
        """The module that trains (the rest of the model stays in eval mode)."""

    @abstractmethod
    def _batches(self, epoch: int) -> list[Batch] | DataLoader:
        """This epoch's training batches for this process."""

    @abstractmethod
    def _forward(self, batch: Batch) -> tuple[HeadOutput, torch.Tensor, torch.Tensor | None]:
        """The head's output, the labels and the structure loss's teacher features (or None) of a batch."""

    @abstractmethod
    def _encode(self, photos: list[Photo]) -> Encoding:
        """Sub-vectors, codes and descriptors of these photos at test time."""

    @abstractmethod
    def _descriptor_pooling(self) -> torch.Tensor:
        """Pooled training features that the descriptor's PCA start is fitted on."""

    @abstractmethod
    def _codebook_embeddings(self) -> torch.Tensor:
        """Training embeddings that k-means turns into the first codewords."""

    def _parameter_groups(self) -> list[dict]:
        """The optimizer's parameter groups, each with its learning rate."""
        return [{"params": [p for p in self.model.head.parameters() if p.requires_grad], "lr": self.config.lr}]

    # -- the shared parts ----------------------------------------------------------------------------
    def _build_optimizer(self) -> torch.optim.Optimizer:
        groups = self._parameter_groups()
        for group in groups:
            group["base_lr"] = group["lr"]
        return torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)

    @torch.no_grad()
    def init_descriptor(self) -> None:
        """Centre the descriptor on the training photos and start its projection at their principal axes."""
        self.model.head.descriptor.init_from_pca(self._descriptor_pooling().to(self.runtime.device))

    @torch.no_grad()
    def init_codebooks(self) -> None:
        """Spherical k-means on training embeddings -> initial codewords (rank 0, then broadcast)."""
        self.model.head.quantizer.init_from_kmeans(self._codebook_embeddings(), seed=self.config.seed)
        if self.runtime.distributed:
            dist.broadcast(self.model.head.quantizer.codebooks.data, src=0)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Codes, descriptor and fused mAP on the protocol's query/database split (main process only)."""
        self.model.eval()
        codebooks = self.model.head.quantizer.normalized_codebooks().float().cpu().numpy()
        split = self.split
        query = self._encode(split.query)
        database = query if split.leave_one_out else self._encode(split.database)
        query_labels = np.array([p.label for p in split.query])
        database_labels = np.array([p.label for p in split.database])
        weights = tuple(sorted({*FUSION_WEIGHTS, self.model.config.fusion_weight}))
        return fused_report(
            query, query_labels, database, database_labels, codebooks, weights, leave_one_out=split.leave_one_out
        )

    def resume(self, path: Path) -> None:
        payload = load_checkpoint(path, map_location=self.runtime.device)
        self.model.load_state_dict(payload["state_dict"])
        if payload.get("optimizer"):
            self.optimizer.load_state_dict(payload["optimizer"])
        self.history = list(payload.get("history", []))
        self.start_epoch = int(payload["epoch"])
        log.info("resumed from %s at epoch %d", path, self.start_epoch)

    def _leads(self) -> bool:
        """Whether this process initialises what all processes then share (rank 0, or the only one)."""
        return self.runtime.is_main or not self.runtime.distributed

    def _start(self) -> None:
        """The descriptor's start (a fresh run only), computed once and shared with every process."""
        if self.start_epoch > 0:
            return
        if self._leads():
            self.init_descriptor()
        if self.runtime.distributed:
            for tensor in (self.model.head.descriptor.mean, self.model.head.descriptor.projection.weight):
                dist.broadcast(tensor.data, src=0)

    def _start_codebooks(self, epoch: int) -> None:
        """The k-means start of the codebooks at ``kmeans_epoch``."""
        if epoch == self.config.kmeans_epoch or (epoch == 0 and self.config.kmeans_epoch <= 0):
            if self._leads():
                self.init_codebooks()
            elif self.runtime.distributed:
                dist.broadcast(self.model.head.quantizer.codebooks.data, src=0)

    def _schedule(self, group: dict, step: int, steps_per_epoch: int) -> float:
        """The learning-rate factor of a parameter group at this step: warm-up, then cosine decay to zero at
        the last step. A group with a ``first_epoch`` rests until then and warms up over one epoch."""
        first = group.get("first_epoch", 0) * steps_per_epoch
        if step < first:
            return 0.0
        warmup = steps_per_epoch * (self.config.warmup_epochs if first == 0 else 1)
        return learning_rate_factor(step - first, steps_per_epoch * self.config.epochs - first, warmup)

    def _train_epoch(self, epoch: int, steps_per_epoch: int) -> dict[str, float]:
        """One epoch of optimizer steps; the log record of its mean loss terms, last lr and time."""
        config = self.config
        self.model.eval()
        self.trainable.train()
        started, totals, n_batches = time.time(), {}, 0
        progress = tqdm(
            self._batches(epoch),
            desc=f"epoch {epoch + 1}/{config.epochs}",
            leave=False,
            disable=not self.runtime.is_main,
        )
        for step, batch in enumerate(progress, start=epoch * steps_per_epoch):
            for group in self.optimizer.param_groups:
                group["lr"] = group["base_lr"] * self._schedule(group, step, steps_per_epoch)
            output, labels, teacher = self._forward(batch)
            loss, parts = phpq_loss(output, labels, config.loss, teacher, self.descriptor_classes)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            n_batches += 1
            totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
            for name, value in parts.items():
                totals[name] = totals.get(name, 0.0) + value
            progress.set_postfix(loss=f"{totals['loss'] / n_batches:.3f}")
        return {
            "epoch": epoch + 1,
            **{k: v / max(1, n_batches) for k, v in totals.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(time.time() - started, 2),
        }

    def _finish_epoch(self, epoch: int, record: dict[str, float]) -> None:
        """Evaluate when due, then (main process) log the record and write the checkpoint and plot."""
        config = self.config
        last = epoch + 1 == config.epochs
        due = last or (config.eval_every > 0 and (epoch + 1) % config.eval_every == 0)
        if self.runtime.is_main and self.split.held_out and due:
            self.metrics = metrics = self.evaluate()
            record.update(metrics)
            log.info(
                "epoch %d: mAP@all %.4f (continuous %.4f)", epoch + 1, metrics["mAP@all"], metrics["continuous_mAP@all"]
            )
        if self.runtime.is_main:
            self.history.append(record)
            with (self.output / "log.jsonl").open("a") as stream:
                stream.write(json.dumps(record) + "\n")
            save_checkpoint(
                self.output / "last.pt",
                self.model,
                config,
                self.class_names,
                epoch + 1,
                self.optimizer,
                self.history,
                self.metrics,
            )
            plot_history(self.history, self.output / "training.png")

    def fit(self) -> dict[str, float]:
        """Train for the configured epochs; returns the final evaluation metrics."""
        steps_per_epoch = len(self._batches(0))
        self._start()
        for epoch in range(self.start_epoch, self.config.epochs):
            self._start_codebooks(epoch)
            self._finish_epoch(epoch, self._train_epoch(epoch, steps_per_epoch))
            if self.runtime.distributed:
                dist.barrier()
        return self.metrics


class CachedTrainer(Trainer):
    """CPU path: the backbone stays frozen, and the head trains on the cached pyramid features of each view."""

    def _prepare(self) -> None:
        config = self.config

        def load() -> FeatureCache:
            caches = [
                build_or_load_cache(
                    photos,
                    Path(config.cache_dir),
                    config.model.backbone,
                    config.model.input_size,
                    config.views,
                    self.cache_run,
                )
                for photos in self.cached_sets
            ]
            return FeatureCache(joined_over_photos([c.features for c in caches]), caches[0].layout, caches[0].views)

        cache = self._main_first(load)
        gather = cache.layout.gather_index(self.model.layout).numpy()
        features = np.array(cache.features)  # [views, photos, F] float16, read into memory once
        self.features = torch.from_numpy(
            features[:, :, gather]
            if len(gather) != features.shape[2] or (gather != np.arange(len(gather))).any()
            else features
        )
        self.teacher = None  # the frozen GAP feature, only when the structure loss needs it
        if config.loss.structure > 0:
            teacher_index = cache.layout.global_average_index("head").numpy()
            self.teacher = torch.from_numpy(features[:, :, teacher_index].astype(np.float32))
            self.teacher -= self.teacher.mean(dim=(0, 1), keepdim=True)  # centred: cosine then spreads out
        self.train_index = self.photo_indices(self.split.train)
        self.train_labels = torch.as_tensor([p.label for p in self.split.train])

    def _main_first(self, load: Callable[[], T]) -> T:
        """``load()`` on the main process first (it builds a missing cache once), then on the others."""
        result = load() if self.runtime.is_main else None
        if self.runtime.distributed:
            dist.barrier()
        return load() if result is None else result  # the other ranks read what rank 0 wrote

    @property
    def cached_sets(self) -> list[list[Photo]]:
        """The photo lists cached one by one, in cache order: the data set's, then the extra training photos."""
        return [self.photo_set.photos, self.extra_photos] if self.extra_photos else [self.photo_set.photos]

    @property
    def cache_run(self) -> CacheRun:
        """How this run's caches are computed."""
        config = self.config
        return CacheRun(config.seed, config.pretrained, workers=config.workers, engine=config.engine)

    def _trainable(self) -> nn.Module:
        return self.model.head

    def photo_indices(self, photos: list[Photo]) -> np.ndarray:
        """Positions of these photos in the cache."""
        position = {photo.path: index for index, photo in enumerate(p for photos in self.cached_sets for p in photos)}
        return np.array([position[photo.path] for photo in photos], dtype=np.int64)

    def _sample(self, epoch: int, views: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """This epoch's batches as (view, cache position, label) of each photo: one random view of each of
        the first ``views`` per photo, shuffled and sharded by rank."""
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        order = torch.randperm(len(self.train_index), generator=generator)
        order = order[self.runtime.rank :: self.runtime.world_size]
        first_view = 0 if self.config.train_on_centre_crop else 1
        picked = torch.randint(first_view, views, (len(order),), generator=generator)
        batch_size = self.config.batch_size
        return [
            (
                picked[start : start + batch_size],
                torch.from_numpy(self.train_index[chunk.numpy()]),
                self.train_labels[chunk],
            )
            for start in range(0, len(order), batch_size)
            if len(chunk := order[start : start + batch_size]) >= 2
        ]

    def _batches(self, epoch: int) -> list[Batch]:
        """One random augmented view per photo (pooled features), shuffled and sharded by rank."""
        return [
            (
                self.features[view, photo].float(),
                labels,
                self.teacher[view, photo] if self.teacher is not None else None,
            )
            for view, photo, labels in self._sample(epoch, self.config.views)
        ]

    def _forward(self, batch: Batch) -> tuple[HeadOutput, torch.Tensor, torch.Tensor | None]:
        pooled, labels, teacher = (t.to(self.runtime.device) if t is not None else None for t in batch)
        return self.wrapped(pooled), labels, teacher

    def _pooled(self, index: np.ndarray, view: int = 0) -> torch.Tensor:
        """The pooled features of these cached photos (one view)."""
        return self.features[view, torch.from_numpy(index)].float().to(self.runtime.device)

    @torch.no_grad()
    def _embed_cached(self, index: np.ndarray, view: int = 0) -> torch.Tensor:
        """The fused embeddings of these cached photos (one view), in chunks."""
        self.model.head.eval()
        return torch.cat(
            [
                self.model.head.fusion(self._pooled(chunk, view))
                for chunk in np.array_split(index, max(1, len(index) // 512))
            ]
        )

    @torch.no_grad()
    def _encode(self, photos: list[Photo]) -> Encoding:
        """Sub-vectors, codes and descriptors of the centre-crop view of these photos."""
        parts = []
        index = self.photo_indices(photos)
        for chunk in np.array_split(index, max(1, len(index) // 512)):
            pooled = self._pooled(chunk)
            quantized = self.model.head.quantizer(self.model.head.fusion(pooled))
            parts.append((quantized.subvectors, quantized.codes, self.model.head.descriptor(pooled)))
        subvectors, codes, descriptors = (torch.cat(column).cpu().numpy() for column in zip(*parts, strict=True))
        return Encoding(subvectors.astype(np.float32), codes.astype(np.uint8), descriptors.astype(np.float32))

    def _descriptor_pooling(self) -> torch.Tensor:
        return self._pooled(self.train_index)

    def _codebook_embeddings(self) -> torch.Tensor:
        return self._embed_cached(self.train_index)


class PartialTrainer(CachedTrainer):
    """CPU path that also trains the backbone's last ``trainable_blocks`` blocks and head: the head trains
    on the cached pooled features first (backbone frozen), then for the last ``partial_epochs`` epochs
    those blocks train with it, from cached maps of the frozen part (``partial_views`` views; the pooled
    features of the taps before them still come from the pooled cache). The blocks' learning rate warms
    up over the first of those epochs and then decays to zero with everything else's.
    """

    def _prepare(self) -> None:
        super()._prepare()
        config, backbone = self.config, self.model.backbone
        cut = len(backbone.blocks) - config.trainable_blocks
        if cut < 1:
            raise ValueError(f"trainable_blocks must be below the backbone's {len(backbone.blocks)} blocks")
        backbone.set_trainable(config.trainable_blocks)

        def load() -> np.ndarray:  # [views, photos, C, H, W] float16, 0.24 GB a view (6,000 photos)
            maps = [
                build_or_load_maps(
                    photos,
                    Path(config.cache_dir),
                    config.model.backbone,
                    config.model.input_size,
                    cut,
                    config.partial_views,
                    self.cache_run,
                )
                for photos in self.cached_sets
            ]
            return joined_over_photos(maps)

        self.maps = self._main_first(load)
        self.network = PartialNetwork(self.model, cut)
        self.first_partial_epoch = config.epochs - config.partial_epochs
        self.blocks_trained = False  # until then the pooled cache is exact

    def _trainable(self) -> nn.Module:
        return self.network

    def _parameter_groups(self) -> list[dict]:
        """The head's group, and the trained blocks' from ``first_partial_epoch`` on."""
        blocks = [p for p in self.model.backbone.parameters() if p.requires_grad]
        return [
            *super()._parameter_groups(),
            {"params": blocks, "lr": self.config.backbone_lr, "first_epoch": self.first_partial_epoch},
        ]

    def resume(self, path: Path) -> None:
        super().resume(path)
        self.blocks_trained = self.start_epoch > self.first_partial_epoch

    def _batches(self, epoch: int) -> list[Batch]:
        if epoch < self.first_partial_epoch:
            return super()._batches(epoch)
        self.blocks_trained = True
        return [
            (view, photo, labels, self.teacher[view, photo] if self.teacher is not None else None)
            for view, photo, labels in self._sample(epoch, self.config.partial_views)
        ]

    def _maps(self, view: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        """The cached maps of these (view, photo) pairs, read in file order, as float32 on the device."""
        order = np.lexsort((photo.numpy(), view.numpy()))
        maps = np.empty((len(order), *self.maps.shape[2:]), dtype=np.float32)
        maps[order] = self.maps[view.numpy()[order], photo.numpy()[order]]
        return torch.from_numpy(maps).to(self.runtime.device)

    def _partial_inputs(self, view: torch.Tensor, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The earlier taps' cached pooled part and the cached maps of these (view, photo) pairs."""
        prefix = self.features[view, photo, : self.network.prefix_size].float().to(self.runtime.device)
        return prefix, self._maps(view, photo)

    def _forward(self, batch: Batch) -> tuple[HeadOutput, torch.Tensor, torch.Tensor | None]:
        if len(batch) == 3:  # (pooled, labels, teacher): a frozen epoch's batch
            return super()._forward(batch)
        view, photo, labels, teacher = batch
        device = self.runtime.device
        teacher = teacher.to(device) if teacher is not None else None
        return self.wrapped(*self._partial_inputs(view, photo)), labels.to(device), teacher

    @torch.no_grad()
    def _pooled(self, index: np.ndarray, view: int = 0) -> torch.Tensor:
        if not self.blocks_trained:
            return super()._pooled(index, view)
        self.network.eval()
        return torch.cat(
            [
                self.network.pool(*self._partial_inputs(torch.full_like(chunk, view), chunk))
                for chunk in torch.split(torch.from_numpy(index), 256)
            ]
        )


class FinetuneTrainer(Trainer):
    """GPU path: the whole model trains end to end on photos with live augmentation (mixed precision on CUDA)."""

    def _prepare(self) -> None:
        config = self.config
        self.model.backbone.set_trainable(config.trainable_blocks)
        dataset = PhotoDataset(self.split.train, config.model.input_size, train=True, seed=config.seed)
        self.sampler = DistributedSampler(dataset, seed=config.seed) if self.runtime.distributed else None
        self.loader = DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=self.sampler is None,
            sampler=self.sampler,
            num_workers=config.workers,
            drop_last=len(dataset) > config.batch_size,
            pin_memory=self.runtime.device.type == "cuda",
            persistent_workers=config.workers > 0,
        )
        self.teacher_backbone = None
        if config.loss.structure > 0:
            self.teacher_backbone = EfficientNetLiteTaps(config.model.backbone, ("head",), pretrained=config.pretrained)
            self.teacher_backbone.set_trainable(0)
            self.teacher_backbone.to(self.runtime.device).eval()

    def _trainable(self) -> nn.Module:
        return self.model

    def _parameter_groups(self) -> list[dict]:
        """The head's group, and the backbone's trainable blocks at ``backbone_lr``."""
        groups = super()._parameter_groups()
        backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        if backbone:
            groups.append({"params": backbone, "lr": self.config.backbone_lr})
        return groups

    def _batches(self, epoch: int) -> DataLoader:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        return self.loader

    def _forward(self, batch: Batch) -> tuple[HeadOutput, torch.Tensor, torch.Tensor | None]:
        device = self.runtime.device
        images, labels = (t.to(device, non_blocking=True) for t in batch)
        teacher = None
        with torch.autocast(device.type, dtype=torch.float16, enabled=self.amp):
            if self.teacher_backbone is not None:
                with torch.no_grad():
                    teacher = self.teacher_backbone(images)[0].float().mean(dim=(2, 3))
                    teacher = teacher - teacher.mean(dim=0, keepdim=True)
            output = self.wrapped(images)
        return output, labels, teacher

    def _encode(self, photos: list[Photo]) -> Encoding:
        return encode_photos(self.model, photos, self.runtime.device, self.config.engine, workers=self.config.workers)

    @torch.no_grad()
    def _sampled_pooling(self, limit: int = 4096) -> torch.Tensor:
        """The pooled features of about ``limit`` training photos (augmented, eval mode)."""
        self.model.eval()
        pooled = []
        for images, _ in self.loader:
            pooled.append(self.model.pool(images.to(self.runtime.device)).float())
            if sum(len(p) for p in pooled) >= limit:
                break
        return torch.cat(pooled)

    def _descriptor_pooling(self) -> torch.Tensor:
        return self._sampled_pooling()

    def _codebook_embeddings(self) -> torch.Tensor:
        return self.model.head.fusion(self._sampled_pooling()).float()


TRAINERS: dict[str, type[Trainer]] = {"cached": CachedTrainer, "partial": PartialTrainer, "finetune": FinetuneTrainer}


def make_trainer(config: TrainConfig, runtime: Runtime | None = None) -> Trainer:
    """The trainer of ``config.mode``."""
    return TRAINERS[config.mode](config, runtime)


def train(config: TrainConfig, resume: Path | None = None) -> dict[str, float]:
    """Run one training; the checkpoint, log.jsonl and training.png land in ``config.output``."""
    runtime = setup_runtime(config.device)
    try:
        trainer = make_trainer(config, runtime)
        if resume is not None:
            trainer.resume(resume)
        return trainer.fit()
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.destroy_process_group()
