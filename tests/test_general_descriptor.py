"""The general descriptor (the untrained backbone's view beside the trained descriptor) and re-exporting
an exported model."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from phpq.eval.datasets import load_photo_set
from phpq.fusion import NeighbourRerank
from phpq.model import PHPQModel
from phpq.prototypes import ClassPrototypes
from phpq_train.checkpoint import model_from_checkpoint, save_checkpoint
from phpq_train.export.cli import export_main
from phpq_train.export.from_onnx import payload_from_export
from phpq_train.export.onnx_export import export_checkpoint, write_metadata
from phpq_train.general import attach_to_checkpoint_model, first_trained_block, pretrained_backbone
from phpq_train.model import PHPQ
from tests.test_export import RECIPE, TINY

GENERAL = replace(TINY, general_dim=8, general_weight=0.6, general_from="untrained_blocks")


@pytest.fixture(scope="module")
def partly_trained(tmp_path_factory, synthetic_folder):
    """A tiny checkpoint whose backbone changed from block 12 on (as partial training changes it)."""
    torch.manual_seed(0)
    model = PHPQ(GENERAL)
    with torch.no_grad():
        for block in list(model.backbone.blocks)[12:]:
            for parameter in block.parameters():
                parameter.add_(0.05 * torch.randn_like(parameter))
    model.head.quantizer.init_from_kmeans(model.head.fusion(torch.randn(64, model.layout.size)))
    path = tmp_path_factory.mktemp("general") / "partly.pt"
    save_checkpoint(path, model, replace(RECIPE, data=str(synthetic_folder), model=GENERAL), list("abcd"), 1)
    return path


def test_the_general_branch_starts_at_the_first_trained_block():
    model, pretrained = PHPQ(TINY), pretrained_backbone(TINY.backbone)
    # nothing trained: the general branch is the head alone
    assert first_trained_block(model.backbone, pretrained) == len(model.backbone.blocks)
    with torch.no_grad():
        for parameter in model.parameters():  # float16 rounding, as an export with --fp16-weights stores it
            parameter.copy_(parameter.half().float())
    assert first_trained_block(model.backbone, pretrained) == len(model.backbone.blocks)
    with torch.no_grad():
        model.backbone.blocks[9]._project_conv.weight.add_(0.01)
    assert first_trained_block(model.backbone, pretrained) == 9


def test_export_carries_the_general_descriptor_mixed_into_the_descriptor(partly_trained, synthetic_folder, tmp_path):
    output, plain = tmp_path / "general.onnx", tmp_path / "plain.onnx"
    assert export_main([str(partly_trained), "-o", str(output), "--parity-photos", "8"]) == 0  # parity holds
    payload = torch.load(partly_trained, weights_only=True)
    export_checkpoint(
        model_from_checkpoint({**payload, "model_config": {**payload["model_config"], "general_dim": 0}}),
        payload,
        plain,
    )
    runtime, reference = PHPQModel(output, prefer_cuda=False), PHPQModel(plain, prefer_cuda=False)
    assert runtime.info.descriptor_dim == 16 + 8
    assert runtime.info.metadata["general_descriptor"] == '{"dim": 8, "weight": 0.6, "first_block": 12}'
    photos = [p.path for p in load_photo_set(synthetic_folder).photos]
    ours, theirs = runtime.encode_paths(photos), reference.encode_paths(photos)
    np.testing.assert_array_equal(ours.codes, theirs.codes)
    trained, general = ours.descriptors[:, :16] / np.sqrt(0.4), ours.descriptors[:, 16:] / np.sqrt(0.6)
    np.testing.assert_allclose(trained, theirs.descriptors, atol=1e-4)  # the trained part is unchanged
    np.testing.assert_allclose(np.linalg.norm(general, axis=1), 1.0, atol=1e-4)
    cosine = ours.descriptors @ ours.descriptors.T  # the app's descriptor similarity mixes the two cosines
    np.testing.assert_allclose(cosine, 0.4 * trained @ trained.T + 0.6 * general @ general.T, atol=1e-5)
    assert not np.allclose(general @ general.T, trained @ trained.T, atol=0.05)


def test_the_general_descriptor_from_the_trained_head_runs_no_second_pass(partly_trained, synthetic_folder, tmp_path):
    """``general_from = "trained_head"``: one linear map of the trained head's pooling, fitted to the untrained
    view on the training photos; the graph holds no untrained block, and the codes and trained part are as
    without it."""
    second_pass, from_head = tmp_path / "second_pass.onnx", tmp_path / "from_head.onnx"
    changes = tmp_path / "head.toml"
    changes.write_text('[model]\ngeneral_from = "trained_head"\n')
    assert export_main([str(partly_trained), "-o", str(second_pass), "--parity-photos", "4"]) == 0
    arguments = [str(partly_trained), "-o", str(from_head), "--parity-photos", "8", "--config", str(changes)]
    assert export_main(arguments) == 0
    runtime, reference = PHPQModel(from_head, prefer_cuda=False), PHPQModel(second_pass, prefer_cuda=False)
    assert runtime.info.metadata["general_descriptor"] == '{"dim": 8, "weight": 0.6, "from": "trained_head"}'
    names = {initializer.name for initializer in onnx.load(from_head).graph.initializer}
    assert not any(name.startswith("general.blocks") for name in names)
    assert any(name.startswith("general.blocks") for name in {i.name for i in onnx.load(second_pass).graph.initializer})
    photos = [p.path for p in load_photo_set(synthetic_folder).photos]  # the photos it was fitted on
    ours, theirs = runtime.encode_paths(photos), reference.encode_paths(photos)
    np.testing.assert_array_equal(ours.codes, theirs.codes)
    np.testing.assert_allclose(ours.descriptors[:, :16], theirs.descriptors[:, :16], atol=1e-4)
    predicted, untrained = ours.descriptors[:, 16:] / np.sqrt(0.6), theirs.descriptors[:, 16:] / np.sqrt(0.6)
    np.testing.assert_allclose(np.linalg.norm(predicted, axis=1), 1.0, atol=1e-4)
    agreement = np.sum(predicted * untrained, axis=1)  # the map reproduces the untrained view it was fitted to
    assert agreement.mean() > 0.9, agreement
    again = tmp_path / "again.onnx"  # a new title: the graph and its fitted map are kept
    (tmp_path / "no_photos").mkdir()
    arguments = [str(from_head), "-o", str(again), "--title", "Head", "--photos", str(tmp_path / "no_photos")]
    assert export_main(arguments) == 0 and PHPQModel(again, prefer_cuda=False).info.model_id == runtime.info.model_id
    payload = payload_from_export(from_head)
    assert payload["model_config"]["general_from"] == "trained_head"
    assert payload["general_fit"]["linear"].shape == (8, 1280)
    assert payload_from_export(second_pass)["general_fit"]["projection"].shape == (8, 1280)


def test_a_general_descriptor_exported_before_general_from_keeps_its_second_pass(partly_trained, tmp_path):
    """A model exported with the untrained blocks before the field existed (Thorough, say) is read as such, not
    as the recipe's kind."""
    first = tmp_path / "first.onnx"
    assert export_main([str(partly_trained), "-o", str(first), "--parity-photos", "4"]) == 0
    older = onnx.load(first)
    for entry in older.metadata_props:
        if entry.key == "phpq.model_config":
            config = json.loads(entry.value)
            del config["general_from"]
            entry.value = json.dumps(config)
    onnx.save(older, first)
    assert payload_from_export(first)["model_config"]["general_from"] == "untrained_blocks"


def test_writing_an_export_again_keeps_its_general_fit(partly_trained, tmp_path, monkeypatch):
    first, again = tmp_path / "first.onnx", tmp_path / "again.onnx"
    assert export_main([str(partly_trained), "-o", str(first), "--parity-photos", "4"]) == 0
    payload = payload_from_export(first)
    assert payload["general_fit"]["projection"].shape == (8, 1280)

    def no_photos(payload):
        raise AssertionError("the fit was carried over: no photo is needed")

    monkeypatch.setattr("phpq_train.general.checkpoint_training_photos", no_photos)
    model = model_from_checkpoint(payload)
    attach_to_checkpoint_model(model, payload)
    export_checkpoint(model, payload, again)
    photos = [p.path for p in load_photo_set(Path(payload["train_config"]["data"])).photos][:6]
    before = PHPQModel(first, prefer_cuda=False).encode_paths(photos)
    after = PHPQModel(again, prefer_cuda=False).encode_paths(photos)
    np.testing.assert_allclose(before.descriptors, after.descriptors, atol=1e-6)


def test_an_exported_model_exports_again_to_the_same_encoder(partly_trained, synthetic_folder, tmp_path):
    payload = torch.load(partly_trained, weights_only=True)
    payload = {**payload, "model_config": {**payload["model_config"], "general_dim": 0}}
    first = export_checkpoint(model_from_checkpoint(payload), payload, tmp_path / "first.onnx")
    again = payload_from_export(tmp_path / "first.onnx")
    assert (
        again["class_names"] == list("abcd")
        and again["train_config"]["protocol"] == payload["train_config"]["protocol"]
    )
    export_checkpoint(model_from_checkpoint(again), again, tmp_path / "again.onnx")
    photos = [p.path for p in load_photo_set(synthetic_folder).photos]
    before = PHPQModel(tmp_path / "first.onnx", prefer_cuda=False).encode_paths(photos)
    after = PHPQModel(tmp_path / "again.onnx", prefer_cuda=False).encode_paths(photos)
    np.testing.assert_array_equal(before.codes, after.codes)
    np.testing.assert_allclose(before.subvectors, after.subvectors, atol=1e-6)
    np.testing.assert_allclose(before.descriptors, after.descriptors, atol=1e-6)
    as_exported_before_the_general_descriptor(tmp_path / "first.onnx", tmp_path / "older.onnx")
    upgraded = tmp_path / "upgraded.onnx"  # an export given a general descriptor: a new graph
    arguments = [str(tmp_path / "older.onnx"), "-o", str(upgraded), "--parity-photos", "4", "--general-dim", "8"]
    assert export_main(arguments) == 0
    info = PHPQModel(upgraded, prefer_cuda=False).info
    assert info.descriptor_dim == 16 + 8 and info.model_id != first
    resettled = tmp_path / "resettled.onnx"  # the recipe's search settings alone: metadata only, the same id
    (tmp_path / "no_photos").mkdir()  # nothing to encode: no photos needed
    arguments = [str(tmp_path / "older.onnx"), "-o", str(resettled), "--search-from-recipe"]
    assert export_main([*arguments, "--photos", str(tmp_path / "no_photos")]) == 0
    info = PHPQModel(resettled, prefer_cuda=False).info
    assert info.model_id == first and info.descriptor_dim == 16
    assert info.search.rerank == NeighbourRerank(**RECIPE.model.neighbour_rerank)


def test_an_export_with_a_general_descriptor_written_again_with_a_new_title_keeps_its_graph(partly_trained, tmp_path):
    """Only the description (or search settings) changes: metadata only, the same graph and model id, no photo
    encoded; a new general weight is a new graph."""
    first, titled, reweighted = tmp_path / "first.onnx", tmp_path / "titled.onnx", tmp_path / "reweighted.onnx"
    assert export_main([str(partly_trained), "-o", str(first), "--parity-photos", "4"]) == 0
    (tmp_path / "no_photos").mkdir()
    arguments = [str(first), "-o", str(titled), "--summary", "Other birds.", "--photos", str(tmp_path / "no_photos")]
    assert export_main(arguments) == 0
    before, after = PHPQModel(first, prefer_cuda=False).info, PHPQModel(titled, prefer_cuda=False).info
    assert after.model_id == before.model_id and after.metadata["summary"] == "Other birds."
    assert after.metadata["general_descriptor"] == before.metadata["general_descriptor"]
    changes = tmp_path / "changes.toml"
    changes.write_text("[model]\ngeneral_weight = 0.25\n")
    assert export_main([str(first), "-o", str(reweighted), "--parity-photos", "4", "--config", str(changes)]) == 0
    info = PHPQModel(reweighted, prefer_cuda=False).info
    assert info.model_id != before.model_id and json.loads(info.metadata["general_descriptor"])["weight"] == 0.25


def as_exported_before_the_general_descriptor(source: Path, target: Path) -> None:
    """``source`` with a model config that does not know the general descriptor (as the default shipped before)."""
    older = onnx.load(source)
    for entry in older.metadata_props:
        if entry.key == "phpq.model_config":
            config = json.loads(entry.value)
            del config["general_dim"], config["general_weight"]
            entry.value = json.dumps(config)
    onnx.save(older, target)


def test_a_file_that_is_neither_checkpoint_nor_model_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert export_main([str(bad), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_an_index_made_with_the_previous_default_upgrades_without_losing_folders(partly_trained, tmp_path, monkeypatch):
    """The shipped default gained the general descriptor by ``phpq-export OLD.onnx``: an index made with
    the old file keeps its folders and labels, and its photos are encoded again with the longer descriptor."""
    from phpq.library import Library
    from tests.conftest import write_image_folder, write_photo

    payload = torch.load(partly_trained, weights_only=True)
    payload = {**payload, "model_config": {**payload["model_config"], "general_dim": 0}}
    bundled = tmp_path / "package" / "default.onnx"
    old_id = export_checkpoint(model_from_checkpoint(payload), payload, bundled)
    monkeypatch.setattr("phpq.registry.bundled_models", lambda: [bundled])
    photos = write_image_folder(tmp_path / "photos", n_classes=2, per_class=3, size=64)
    database = tmp_path / "data" / "index.sqlite3"
    as_exported_before_the_general_descriptor(bundled, bundled)
    info = PHPQModel(bundled, prefer_cuda=False).info
    vectors = np.random.default_rng(0).standard_normal((len(info.class_names), info.dim))
    prototypes = ClassPrototypes(info.class_names, vectors, "subvectors", 0.1, 0.5).to_metadata(len(info.class_names))
    write_metadata(bundled, bundled, {"class_prototypes": prototypes})
    with Library(database, prefer_cuda=False) as library:
        library.add_folder(photos, species_from_folders=True)
        assert library.index().encoded == 6 and library.active_model_id == old_id
        folders, species = library.folders(), library.species()
    upgraded = tmp_path / "upgraded.onnx"
    arguments = [str(bundled), "-o", str(upgraded), "--parity-photos", "4", "--general-dim", "8"]
    assert export_main(arguments) == 0  # the upgrade path
    bundled.write_bytes(upgraded.read_bytes())
    with Library(database, prefer_cuda=False) as library:
        assert library.active_model_id != old_id
        assert [folder.path for folder in library.folders()] == [folder.path for folder in folders] == [photos]
        assert library.species() == species and sum(species.values()) == 6
        assert library.status().pending == 6 and library.index().encoded == 6
        result = library.search(write_photo(tmp_path / "q.png", 0, 60), top_k=6)
        assert result.n_searched == 6 and len(result.hits) == 6
        assert library.model_for().info.descriptor_dim == 16 + 8
        assert library.model_for().info.metadata["class_prototypes"] == prototypes  # the code names species as before


def test_an_export_written_again_with_other_general_dims_fits_them_on_its_training_photos(partly_trained, tmp_path):
    first, again = tmp_path / "first.onnx", tmp_path / "again.onnx"
    assert export_main([str(partly_trained), "-o", str(first), "--parity-photos", "4"]) == 0
    assert export_main([str(first), "-o", str(again), "--parity-photos", "4", "--general-dim", "4"]) == 0
    assert PHPQModel(again, prefer_cuda=False).info.descriptor_dim == 16 + 4
