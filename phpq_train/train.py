"""The PHPQ training loop: cached (frozen backbone, CPU) or finetune (end-to-end, GPU) mode, DDP-ready."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from phpq.eval.datasets import Photo, PhotoSet, load_photo_set, split_protocol
from phpq.model import Encoding
from phpq_train.backbone import EfficientNetLiteTaps
from phpq_train.config import TrainConfig
from phpq_train.data import PhotoDataset
from phpq_train.evaluate import fused_report
from phpq_train.features import FeatureCache, build_or_load_cache
from phpq_train.inference import BatchRunner, run_over_photos
from phpq_train.losses import phpq_loss
from phpq_train.model import PHPQ, ModelConfig, RetrievalEncoder

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


# ----------------------------------------------------------------------------------------------------
# Devices, distribution, checkpoints


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


def save_checkpoint(
    path: Path,
    model: PHPQ,
    config: TrainConfig,
    class_names: list[str],
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    history: list[dict] | None = None,
    metrics: dict[str, float] | None = None,
) -> None:
    """Atomically write a checkpoint of plain containers and tensors (loadable with weights_only=True)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model_config": model.config.to_dict(),
        "train_config": config.to_dict(),
        "class_names": list(class_names),
        "epoch": epoch,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "history": history or [],
        "metrics": metrics or {},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``: no pickled code runs)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a PHPQ checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> PHPQ:
    """Rebuild the model of a checkpoint; backbone weights come from the checkpoint, not the wheels."""
    model = PHPQ(ModelConfig(**payload["model_config"]), pretrained=False)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


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
    """Encode photos with the test-time preprocessing (through ONNX Runtime on CPU when present)."""
    runner = BatchRunner(RetrievalEncoder(model.eval()), model.config.input_size, 3, engine=engine, device=device)
    subvectors, codes, descriptors = run_over_photos(
        runner, photos, model.config.input_size, batch_size=batch_size, workers=workers, desc="encoding"
    )
    return Encoding(
        subvectors.astype(np.float32),
        codes.astype(np.uint8 if model.config.n_codewords <= 256 else np.int64),
        descriptors.astype(np.float32),
    )


FUSION_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # logged at every evaluation


# ----------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """Builds data, model and optimizer from a TrainConfig and runs the epochs."""

    def __init__(self, config: TrainConfig, runtime: Runtime | None = None):
        self.config = config
        self.runtime = runtime or setup_runtime(config.device)
        self.output = Path(config.output)
        if self.runtime.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
        seed_everything(config.seed + self.runtime.rank)
        self.photo_set: PhotoSet = load_photo_set(Path(config.data), config.split)
        self.split = split_protocol(self.photo_set, config.protocol)
        config.model.n_classes = self.split.train_classes
        self.class_names = self.photo_set.class_names
        self.model = PHPQ(config.model, pretrained=config.pretrained).to(self.runtime.device)
        self.cached = config.mode == "cached"
        self.amp = config.amp and self.runtime.device.type == "cuda"
        self.history: list[dict] = []
        self.start_epoch = 0
        if self.cached:
            self._prepare_cache()
        else:
            self._prepare_finetune()
        trainable = self.model.head if self.cached else self.model
        self.trainable = trainable
        self.wrapped = (
            DistributedDataParallel(
                trainable, device_ids=[self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            )
            if self.runtime.distributed
            else trainable
        )
        self.optimizer = self._build_optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    # -- data ------------------------------------------------------------------------------------
    def _photo_indices(self, photos: list[Photo]) -> np.ndarray:
        position = {photo.path: index for index, photo in enumerate(self.photo_set.photos)}
        return np.array([position[photo.path] for photo in photos], dtype=np.int64)

    def _prepare_cache(self) -> None:
        config = self.config

        def load() -> FeatureCache:
            return build_or_load_cache(
                self.photo_set.photos,
                Path(config.cache_dir),
                config.model.backbone,
                config.model.input_size,
                config.views,
                seed=config.seed,
                workers=config.workers,
                engine=config.engine,
                pretrained=config.pretrained,
            )

        cache = load() if self.runtime.is_main else None  # rank 0 builds the cache once
        if self.runtime.distributed:
            dist.barrier()
        if cache is None:
            cache = load()  # the other ranks read what rank 0 wrote
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
        self.train_index = self._photo_indices(self.split.train)
        self.train_labels = torch.as_tensor([p.label for p in self.split.train])
        self.query_index = self._photo_indices(self.split.query)
        self.database_index = self._photo_indices(self.split.database)

    def _prepare_finetune(self) -> None:
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

    def _build_optimizer(self) -> torch.optim.Optimizer:
        config = self.config
        groups = [{"params": [p for p in self.model.head.parameters() if p.requires_grad], "lr": config.lr}]
        if not self.cached:
            backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
            if backbone:
                groups.append({"params": backbone, "lr": config.backbone_lr})
        for group in groups:
            group["base_lr"] = group["lr"]
        return torch.optim.AdamW(groups, weight_decay=config.weight_decay)

    def _batches(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] | DataLoader:
        """Cached mode: one random augmented view per photo, shuffled and sharded by rank."""
        if not self.cached:
            if self.sampler is not None:
                self.sampler.set_epoch(epoch)
            return self.loader
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        order = torch.randperm(len(self.train_index), generator=generator)
        order = order[self.runtime.rank :: self.runtime.world_size]
        first_view = 0 if self.config.train_on_centre_crop else 1
        views = torch.randint(first_view, self.config.views, (len(order),), generator=generator)
        batch_size = self.config.batch_size
        batches = []
        for start in range(0, len(order), batch_size):
            chunk, view = order[start : start + batch_size], views[start : start + batch_size]
            if len(chunk) < 2:
                continue
            photo = torch.from_numpy(self.train_index[chunk.numpy()])
            teacher = self.teacher[view, photo] if self.teacher is not None else None
            batches.append((self.features[view, photo].float(), self.train_labels[chunk], teacher))
        return batches

    # -- steps -------------------------------------------------------------------------------------
    def _forward(self, batch: tuple) -> tuple[torch.Tensor, dict[str, float]]:
        device = self.runtime.device
        if self.cached:
            pooled, labels, teacher = (t.to(device) if t is not None else None for t in batch)
            output = self.wrapped(pooled)
        else:
            images, labels = (t.to(device, non_blocking=True) for t in batch)
            teacher = None
            with torch.autocast(device.type, dtype=torch.float16, enabled=self.amp):
                if self.teacher_backbone is not None:
                    with torch.no_grad():
                        teacher = self.teacher_backbone(images)[0].float().mean(dim=(2, 3))
                        teacher = teacher - teacher.mean(dim=0, keepdim=True)
                output = self.wrapped(images)
        return phpq_loss(output, labels, self.config.loss, teacher)

    @torch.no_grad()
    def _embed_cached(self, index: np.ndarray, view: int = 0) -> torch.Tensor:
        self.model.head.eval()
        return torch.cat(
            [
                self.model.head.fusion(self.features[view, torch.from_numpy(chunk)].float().to(self.runtime.device))
                for chunk in np.array_split(index, max(1, len(index) // 512))
            ]
        )

    @torch.no_grad()
    def _encode_cached(self, index: np.ndarray) -> Encoding:
        """Sub-vectors, codes and descriptors of the centre-crop view of these photos."""
        parts = []
        for chunk in np.array_split(index, max(1, len(index) // 512)):
            pooled = self.features[0, torch.from_numpy(chunk)].float().to(self.runtime.device)
            quantized = self.model.head.quantizer(self.model.head.fusion(pooled))
            parts.append((quantized.subvectors, quantized.codes, self.model.head.descriptor(pooled)))
        subvectors, codes, descriptors = (torch.cat(column).cpu().numpy() for column in zip(*parts, strict=True))
        return Encoding(subvectors.astype(np.float32), codes.astype(np.uint8), descriptors.astype(np.float32))

    @torch.no_grad()
    def init_descriptor(self) -> None:
        """Centre the descriptor on the training photos and start its projection at their principal axes."""
        if self.cached:
            pooled = self.features[0, torch.from_numpy(self.train_index)].float()
        else:
            pooled = self._sampled_pooling()
        self.model.head.descriptor.init_from_pca(pooled.to(self.runtime.device))

    @torch.no_grad()
    def _sampled_pooling(self, limit: int = 4096) -> torch.Tensor:
        """Finetune mode: the pooled features of about ``limit`` training photos (augmented, eval mode)."""
        self.model.eval()
        pooled = []
        for images, _ in self.loader:
            pooled.append(self.model.pool(images.to(self.runtime.device)).float())
            if sum(len(p) for p in pooled) >= limit:
                break
        return torch.cat(pooled)

    @torch.no_grad()
    def init_codebooks(self) -> None:
        """Spherical k-means on training embeddings -> initial codewords (rank 0, then broadcast)."""
        if self.cached:
            embeddings = self._embed_cached(self.train_index)
        else:
            embeddings = self.model.head.fusion(self._sampled_pooling()).float()
        self.model.head.quantizer.init_from_kmeans(embeddings, seed=self.config.seed)
        if self.runtime.distributed:
            dist.broadcast(self.model.head.quantizer.codebooks.data, src=0)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Codes, descriptor and fused mAP on the protocol's query/database split (main process only)."""
        self.model.eval()
        codebooks = self.model.head.quantizer.normalized_codebooks().float().cpu().numpy()
        split = self.split
        if self.cached:
            query = self._encode_cached(self.query_index)
            database = query if split.leave_one_out else self._encode_cached(self.database_index)
        else:
            device, engine, workers = self.runtime.device, self.config.engine, self.config.workers
            query = encode_photos(self.model, split.query, device, engine, workers=workers)
            database = (
                query
                if split.leave_one_out
                else encode_photos(self.model, split.database, device, engine, workers=workers)
            )
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

    def fit(self) -> dict[str, float]:
        """Train for the configured epochs; returns the final evaluation metrics."""
        config = self.config
        steps_per_epoch = len(self._batches(0))
        total_steps = steps_per_epoch * config.epochs
        warmup_steps = steps_per_epoch * config.warmup_epochs
        log_path = self.output / "log.jsonl"
        metrics: dict[str, float] = {}
        if self.start_epoch == 0:
            if self.runtime.is_main or not self.runtime.distributed:
                self.init_descriptor()
            if self.runtime.distributed:
                for tensor in (self.model.head.descriptor.mean, self.model.head.descriptor.projection.weight):
                    dist.broadcast(tensor.data, src=0)
        for epoch in range(self.start_epoch, config.epochs):
            if epoch == config.kmeans_epoch or (epoch == 0 and config.kmeans_epoch <= 0):
                if self.runtime.is_main or not self.runtime.distributed:
                    self.init_codebooks()
                elif self.runtime.distributed:
                    dist.broadcast(self.model.head.quantizer.codebooks.data, src=0)
            self.trainable.train()
            if self.cached:
                self.model.backbone.eval()
            started, totals, n_batches = time.time(), {}, 0
            batches = self._batches(epoch)
            progress = tqdm(
                batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not self.runtime.is_main
            )
            for step, batch in enumerate(progress, start=epoch * steps_per_epoch):
                factor = learning_rate_factor(step, total_steps, warmup_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = group["base_lr"] * factor
                loss, parts = self._forward(batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                n_batches += 1
                totals["loss"] = totals.get("loss", 0.0) + float(loss.detach())
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + value
                progress.set_postfix(loss=f"{totals['loss'] / n_batches:.3f}")
            record = {
                "epoch": epoch + 1,
                **{k: v / max(1, n_batches) for k, v in totals.items()},
                "lr": self.optimizer.param_groups[0]["lr"],
                "seconds": round(time.time() - started, 2),
            }
            last = epoch + 1 == config.epochs
            due = last or (config.eval_every > 0 and (epoch + 1) % config.eval_every == 0)
            if self.runtime.is_main and self.split.held_out and due:
                metrics = self.evaluate()
                record.update(metrics)
                log.info(
                    "epoch %d: mAP@all %.4f (continuous %.4f)",
                    epoch + 1,
                    metrics["mAP@all"],
                    metrics["continuous_mAP@all"],
                )
            if self.runtime.is_main:
                self.history.append(record)
                with log_path.open("a") as stream:
                    stream.write(json.dumps(record) + "\n")
                save_checkpoint(
                    self.output / "last.pt",
                    self.model,
                    config,
                    self.class_names,
                    epoch + 1,
                    self.optimizer,
                    self.history,
                    metrics,
                )
                plot_history(self.history, self.output / "training.png")
            if self.runtime.distributed:
                dist.barrier()
        return metrics


def train(config: TrainConfig, resume: Path | None = None) -> dict[str, float]:
    """Run one training; the checkpoint, log.jsonl and training.png land in ``config.output``."""
    runtime = setup_runtime(config.device)
    try:
        trainer = Trainer(config, runtime)
        if resume is not None:
            trainer.resume(resume)
        return trainer.fit()
    finally:
        if runtime.distributed and dist.is_initialized():
            dist.destroy_process_group()
