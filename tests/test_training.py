"""Tiny end-to-end trainings on synthetic class-structured photos (CPU, seconds each)."""

import copy
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

import phpq_train
from phpq.eval.datasets import load_photo_set, split_protocol
from phpq.model import PHPQModel
from phpq.prototypes import ClassPrototypes
from phpq_train.checkpoint import load_checkpoint, model_from_checkpoint
from phpq_train.cli import eval_main, train_main
from phpq_train.config import RECIPE, TrainConfig, load_config
from phpq_train.data import PhotoDataset
from phpq_train.features import build_or_load_cache
from phpq_train.losses import LossConfig
from phpq_train.model import ModelConfig
from phpq_train.train import (
    CachedTrainer,
    FinetuneTrainer,
    PartialTrainer,
    Trainer,
    make_trainer,
    setup_runtime,
    train,
)
from tests.conftest import tiny_overrides, write_extra_set

ROOT = Path(__file__).resolve().parents[1]


def chance_map(labels_query: np.ndarray, labels_database: np.ndarray) -> float:
    """Expected mAP of a random ranking, about the fraction of relevant items."""
    return float(np.mean([(labels_database == q).mean() for q in labels_query]))


def checkpoint_report(checkpoint: Path, data: Path) -> dict:
    """What ``phpq-eval --checkpoint`` prints for the val protocol of ``data`` (encoding the photos)."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        eval_main(
            ["--checkpoint", str(checkpoint), "--data", str(data), "--protocol", "val", "--workers", "0", "--json"]
        )
    return json.loads(buffer.getvalue())


def test_the_bundled_recipe_is_the_only_source_of_the_config_values():
    recipe = tomllib.loads(RECIPE.read_text())
    derived = {"n_classes"}  # a run derives it from its training photos
    for cls, values in ((TrainConfig, recipe), (ModelConfig, recipe["model"]), (LossConfig, recipe["loss"])):
        names = {f.name for f in fields(cls)}
        with_default = {f.name for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}
        assert with_default <= derived, f"{cls.__name__} holds values of its own: {with_default - derived}"
        assert set(values) - {"model", "loss"} == names - derived - {"model", "loss"}, cls.__name__
    assert RECIPE.is_relative_to(Path(phpq_train.__file__).parent)  # package data: installed with phpq_train
    config = load_config()
    assert config == TrainConfig(**recipe)
    assert load_config(ROOT / "configs" / "cub_cpu.toml") == config  # configs/ changes nothing
    with pytest.raises(TypeError):
        Trainer(config)  # the shared loop alone trains nothing: make_trainer picks the mode's trainer

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        assert train_main(["--print-config"]) == 0  # phpq-train without --config: the recipe
    assert json.loads(buffer.getvalue()) == json.loads(json.dumps(config.to_dict()))


def test_cached_training_raises_map_far_above_chance_and_checkpoints_round_trip(synthetic_folder, tmp_path):
    config = load_config(
        None, [*tiny_overrides(synthetic_folder, tmp_path / "run", tmp_path / "cache"), 'mode="cached"']
    )
    trainer = make_trainer(config, setup_runtime("cpu"))
    assert isinstance(trainer, CachedTrainer)
    split = split_protocol(load_photo_set(synthetic_folder), "val")
    chance = chance_map(np.array([p.label for p in split.query]), np.array([p.label for p in split.database]))
    metrics = trainer.fit()
    assert metrics["mAP@all"] > 0.9 > chance + 0.5
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, 7)) and "mAP@all" in log[-1]
    assert (tmp_path / "run" / "training.png").stat().st_size > 1000

    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["epoch"] == 6 and payload["class_names"][0] == "001.class_0"
    model = model_from_checkpoint(payload)
    for name, tensor in trainer.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor.cpu(), msg=name)
    images = torch.randn(2, 3, 64, 64)
    trainer.model.eval()
    for a, b in zip(model.encode(images), trainer.model.encode(images), strict=True):
        torch.testing.assert_close(a, b)

    # phpq-eval on the checkpoint reproduces the training-time number (same split, same encodings).
    report = checkpoint_report(tmp_path / "run" / "last.pt", synthetic_folder)
    assert report["mAP@all"] == pytest.approx(metrics["mAP@all"], abs=0.05)


def test_partial_mode_trains_only_the_last_blocks_in_its_last_epochs_and_scores_as_its_checkpoint(
    synthetic_folder, tmp_path
):
    overrides = tiny_overrides(synthetic_folder, tmp_path / "run", tmp_path / "cache")
    config = load_config(
        None, [*overrides, 'mode="partial"', "trainable_blocks=2", "epochs=4", "partial_epochs=2", "eval_every=0"]
    )
    trainer = make_trainer(config, setup_runtime("cpu"))
    assert isinstance(trainer, PartialTrainer)
    backbone = trainer.model.backbone
    cut = len(backbone.blocks) - 2
    start = copy.deepcopy(backbone.state_dict())
    blocks_group = trainer.optimizer.param_groups[-1]
    steps = len(trainer._batches(0))
    assert [trainer._schedule(blocks_group, step, steps) > 0 for step in range(0, 4 * steps, steps)] == [
        False,
        False,
        True,
        True,
    ]
    metrics = trainer.fit()
    trained = {name for name, tensor in backbone.state_dict().items() if not torch.equal(tensor, start[name])}
    assert trained, "the last blocks did not train"
    assert all(
        name.startswith((*[f"blocks.{b}." for b in range(cut, len(backbone.blocks))], "head."))
        and "running_" not in name  # batch-norm statistics stay ImageNet's
        for name in trained
    ), trained

    # The pooled features the trainer computes from its cached maps are the model's own on the photos.
    photos = trainer.split.query[:4]
    images = torch.stack([PhotoDataset(photos, 64)[i][0] for i in range(len(photos))])
    trainer.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            trainer._pooled(trainer.photo_indices(photos)), trainer.model.pool(images), atol=0.05, rtol=0.02
        )

    # phpq-eval on the checkpoint (encoding the photos with the whole model) reproduces the training-time number.
    report = checkpoint_report(tmp_path / "run" / "last.pt", synthetic_folder)
    assert report["mAP@all"] == pytest.approx(metrics["mAP@all"], abs=0.05)
    assert metrics["mAP@all"] > 0.6


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainable_blocks=0"], "trainable_blocks"),
        (["partial_epochs=31"], "partial_epochs"),
        (["partial_views=6"], "partial_views"),
        (["partial_views=1", "train_on_centre_crop=false"], "partial_views"),
    ],
)
def test_partial_mode_refuses_settings_it_cannot_train(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, ['mode="partial"', "epochs=30", "views=5", *overrides])


def test_resume_continues_from_the_checkpoint_and_training_leaves_its_config_as_it_was(synthetic_folder, tmp_path):
    overrides = tiny_overrides(synthetic_folder, tmp_path / "run", tmp_path / "cache")
    first = load_config(None, [*overrides, "epochs=2"])
    before = copy.deepcopy(first)
    train(first)
    assert first == before
    config = load_config(None, [*overrides, "epochs=3"])
    before = copy.deepcopy(config)
    metrics = train(config, resume=tmp_path / "run" / "last.pt")
    assert config == before
    # The run's derived values (here the class count) live in the checkpoint's copy of the config.
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert config.model.n_classes == 0 and payload["train_config"]["model"]["n_classes"] == 4
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3
    assert metrics["mAP@all"] > 0.5


def test_unseen_species_protocol_trains_on_half_the_classes(synthetic_folder_6, tmp_path):
    overrides = tiny_overrides(synthetic_folder_6, tmp_path / "run", tmp_path / "cache")
    config = load_config(None, [*overrides, 'protocol="unseen"', "loss.structure=1.0"])
    trainer = make_trainer(config, setup_runtime("cpu"))
    assert trainer.model.config.n_classes == 3
    assert {p.label for p in trainer.split.train} == {0, 1, 2}
    assert {p.label for p in trainer.split.query} == {3, 4, 5}
    metrics = trainer.fit()
    assert metrics["mAP@all"] > 0.6  # chance is about 1/3


def test_species_of_another_photo_set_train_beside_the_protocols_own(synthetic_folder_6, tmp_path):
    extra_root = write_extra_set(tmp_path / "extra")
    overrides = tiny_overrides(synthetic_folder_6, tmp_path / "run", tmp_path / "cache")
    config = load_config(
        None,
        [
            *overrides,
            'protocol="unseen"',
            'mode="partial"',
            "epochs=4",
            "partial_epochs=1",
            f'extra_data="{extra_root}"',
        ],
    )
    trainer = make_trainer(config, setup_runtime("cpu"))
    assert trainer.model.config.n_classes == 5  # classes 0-2, then Alpha Bird and Echo Bird
    assert trainer.class_names == ["001.class_0", "002.class_1", "003.class_2", "Alpha Bird", "Echo Bird"]
    assert {p.label for p in trainer.split.train} == {0, 1, 2, 3, 4} and len(trainer.split.train) == 30 + 6
    assert {p.label for p in trainer.split.query} == {3, 4, 5}  # still the held-out CUB-like classes
    # The extra photos' cached features are their own (the sets are cached one by one, then joined).
    extra_photos = [p for p in trainer.split.train if p.path.is_relative_to(extra_root)]
    own = build_or_load_cache(
        extra_photos, tmp_path / "cache", "efficientnet_lite0", 64, config.views, trainer.cache_run
    )
    gather = own.layout.gather_index(trainer.model.layout).numpy()
    np.testing.assert_array_equal(
        trainer.features[:, trainer.photo_indices(extra_photos)].numpy(), np.asarray(own.features)[:, :, gather]
    )
    assert trainer.maps.shape[1] == len(trainer.photo_set.photos) + len(extra_photos)
    metrics = trainer.fit()
    assert metrics["mAP@all"] > 0.6
    assert load_checkpoint(tmp_path / "run" / "last.pt")["class_names"] == trainer.class_names
    # The exported model names the extra species too: prototypes of every species it trained on.
    from phpq_train.export.cli import export_main
    from phpq_train.export.prototypes import main as write_prototypes

    model = tmp_path / "extra.onnx"
    assert export_main([str(tmp_path / "run" / "last.pt"), "-o", str(model), "--parity-photos", "4"]) == 0
    named = [str(model), "--photos", str(synthetic_folder_6), "--protocol", "unseen", "--threshold", "0.3"]
    assert write_prototypes([*named, "-o", str(tmp_path / "no.onnx")]) == 2  # the extra species missing
    assert write_prototypes([*named, "--extra-photos", str(extra_root), "-o", str(model)]) == 0
    prototypes = ClassPrototypes.from_model(PHPQModel(model, prefer_cuda=False).info)
    assert prototypes.names == ["class 0", "class 1", "class 2", "Alpha Bird", "Echo Bird"]


def test_finetune_mode_runs_end_to_end_on_cpu(synthetic_folder, tmp_path):
    overrides = tiny_overrides(synthetic_folder, tmp_path / "run", tmp_path / "cache")
    config = load_config(
        None, [*overrides, 'mode="finetune"', "epochs=2", "trainable_blocks=2", "loss.structure=0.5", "eval_every=0"]
    )
    trainer = make_trainer(config, setup_runtime("cpu"))
    assert isinstance(trainer, FinetuneTrainer)
    frozen = trainer.model.backbone.blocks[0]._depthwise_conv.weight.clone()
    trained = trainer.model.backbone.blocks[-1]._project_conv.weight.clone()
    metrics = trainer.fit()
    assert torch.equal(trainer.model.backbone.blocks[0]._depthwise_conv.weight, frozen)
    assert not torch.equal(trainer.model.backbone.blocks[-1]._project_conv.weight, trained)
    assert 0.0 <= metrics["mAP@all"] <= 1.0


def test_ddp_with_two_gloo_processes(synthetic_folder, tmp_path):
    overrides = tiny_overrides(synthetic_folder, tmp_path / "run", tmp_path / "cache")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "phpq_train",
        *[arg for item in [*overrides, "epochs=2", 'device="cpu"'] for arg in ("--set", item)],
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # written once, by rank 0
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 2


@pytest.mark.parametrize(
    ("baseline", "protocol", "queries", "database"), [("gmp", "unseen", 30, 30), ("gap", "val", 12, 48)]
)
def test_the_frozen_baselines_score_each_protocol(synthetic_folder_6, baseline, protocol, queries, database):
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        arguments = ["--baseline", baseline, "--data", str(synthetic_folder_6), "--protocol", protocol]
        assert eval_main([*arguments, "--workers", "0", "--json"]) == 0
    report = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert report["method"].startswith(f"efficientnet_lite0 {baseline.upper()}")
    assert (report["queries"], report["database"]) == (queries, database)
    assert report["P@4"] > 0.5 and 0.0 < report["mAP@all"] <= 1.0  # 6 colour-coded classes, chance is 1/6
