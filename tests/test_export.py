"""Export of a tiny model: parity, metadata, codebooks, and refusal of bad model files."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import tomllib
import torch

import phpq_train
from phpq.eval.datasets import load_photo_set
from phpq.fusion import AdaptiveWeight, CollectionCentring, CollectionGate, NeighbourRerank
from phpq.locations import DEFAULT_MODEL_NAME, bundled_models
from phpq.model import CODEBOOKS_NAME, ModelError, PHPQModel
from phpq.prototypes import ClassPrototypes
from phpq.zoom import Zoom
from phpq_train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from phpq_train.config import load_config
from phpq_train.export.cli import export_main
from phpq_train.export.onnx_export import export_checkpoint
from phpq_train.export.parity import check_parity
from phpq_train.model import PHPQ

RECIPE = load_config()
TINY = replace(
    RECIPE.model,
    input_size=64,
    encode_size=80,  # photos are encoded larger than the training crops, the bins laid out for 64
    dim=32,
    n_subspaces=4,
    n_codewords=16,
    topk=4,
    descriptor_dim=16,
    n_classes=4,
    mirror_average=False,  # the recipe's models average mirror images; --mirror-average turns it on below
    general_dim=0,  # the general descriptor has tests of its own (tests/test_general_descriptor.py)
)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, synthetic_folder) -> Path:
    torch.manual_seed(0)
    model = PHPQ(TINY)
    model.head.quantizer.init_from_kmeans(model.head.fusion(torch.randn(64, model.layout.size)))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    config = replace(RECIPE, data=str(synthetic_folder), model=TINY)
    save_checkpoint(path, model, config, [f"class_{i}" for i in range(4)], 1, metrics={"mAP@all": 0.5})
    return path


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    arguments = [
        str(tiny_checkpoint),
        "-o",
        str(output),
        "--parity-photos",
        "12",
        "--int8",
        "--calibration-photos",
        "8",
    ]
    assert export_main(arguments) == 0
    assert output.with_suffix(".int8.onnx").is_file()
    return output


def test_export_round_trips_metadata_codebooks_and_parity(tiny_checkpoint, exported, synthetic_folder):
    payload = load_checkpoint(tiny_checkpoint)
    model = model_from_checkpoint(payload)
    runtime = PHPQModel(exported)
    assert runtime.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    info = runtime.info
    assert (info.backbone, info.input_size, info.n_subspaces, info.n_codewords, info.bits, info.dim) == (
        "efficientnet_lite0",
        80,
        4,
        16,
        16,
        32,
    )
    assert info.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert info.validation == {"mAP@all": 0.5} and len(info.model_id) == 64
    np.testing.assert_allclose(
        runtime.codebooks, model.head.quantizer.normalized_codebooks().detach().numpy(), atol=1e-6
    )
    photos = [p.path for p in load_photo_set(synthetic_folder).photos]
    report = check_parity(model, exported, photos)
    assert report.ok and report.max_abs_diff <= 1e-4 and report.code_agreement >= 0.995, str(report)
    assert info.preprocessing == TINY.encode_preprocessing  # the geometry the graph was exported for
    assert [d.dim_value for d in onnx.load(exported).graph.input[0].type.tensor_type.shape.dim][1:] == [3, 80, 80]
    encoded = runtime.encode(np.zeros((3, 3, 80, 80), np.float32))
    assert encoded.subvectors.shape == (3, 4, 8) and encoded.codes.shape == (3, 4) and encoded.codes.dtype == np.uint8
    assert encoded.descriptors.shape == (3, 16) and runtime.info.has_descriptor
    np.testing.assert_allclose(np.linalg.norm(encoded.descriptors, axis=1), 1.0, atol=1e-5)


def test_training_code_encodes_photos_as_the_exported_model_does(tiny_checkpoint, exported, synthetic_folder):
    """Evaluation and the benches (``encode_photos``) see the photos at the app's encode size and ratio."""
    from phpq_train.train import encode_photos

    photos = load_photo_set(synthetic_folder).photos[:6]
    model = model_from_checkpoint(load_checkpoint(tiny_checkpoint))
    ours = encode_photos(model, photos, torch.device("cpu"), engine="torch", workers=0)
    app = PHPQModel(exported, prefer_cuda=False).encode_paths([p.path for p in photos])
    np.testing.assert_allclose(ours.subvectors, app.subvectors, atol=1e-4)
    np.testing.assert_allclose(ours.descriptors, app.descriptors, atol=1e-4)
    model.config = replace(model.config, encode_size=TINY.input_size)  # what it did before: the training size
    at_training_size = encode_photos(model, photos, torch.device("cpu"), engine="torch", workers=0)
    assert not np.allclose(at_training_size.descriptors, app.descriptors, atol=1e-3)


def test_a_checkpoint_written_before_the_search_settings_existed_loads_them_from_the_recipe(tiny_checkpoint, tmp_path):
    payload = load_checkpoint(tiny_checkpoint)
    for name in ("query_expansion", "adaptive_weight", "neighbour_rerank", "collection_centring", "mirror_average"):
        del payload["model_config"][name]
    torch.save(payload, tmp_path / "old.pt")
    old = model_from_checkpoint(load_checkpoint(tmp_path / "old.pt"))
    assert old.config == model_from_checkpoint(load_checkpoint(tiny_checkpoint)).config
    recipe = load_config().model
    assert old.config.query_expansion == recipe.query_expansion == 3
    assert old.config.adaptive_weight == recipe.adaptive_weight and old.config.adaptive_weight
    assert old.config.neighbour_rerank == recipe.neighbour_rerank and old.config.neighbour_rerank
    assert old.config.collection_centring == recipe.collection_centring and old.config.collection_centring
    for name in ("encode_size", "encode_resize_ratio"):  # written before photos were encoded larger
        del payload["model_config"][name]
    torch.save(payload, tmp_path / "older.pt")
    older = model_from_checkpoint(load_checkpoint(tmp_path / "older.pt")).config
    assert older.encode_preprocessing == recipe.encode_preprocessing and older.input_size == 64


def test_the_model_id_is_the_content_hash(tiny_checkpoint, tmp_path):
    payload = load_checkpoint(tiny_checkpoint)
    model = model_from_checkpoint(payload)
    first = export_checkpoint(model, payload, tmp_path / "a.onnx")
    assert export_checkpoint(model, payload, tmp_path / "b.onnx") == first
    with torch.no_grad():
        model.head.quantizer.codebooks.add_(0.1)
    assert export_checkpoint(model, payload, tmp_path / "c.onnx") != first


def test_damaged_foreign_and_unlabelled_models_are_refused(exported, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"not a readable ONNX file|cannot be loaded|not a PHPQ model"):
        PHPQModel(truncated)
    random_bytes = tmp_path / "random.onnx"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError):
        PHPQModel(random_bytes)
    with pytest.raises(ModelError, match="cannot read model file"):
        PHPQModel(tmp_path / "missing.onnx")

    no_metadata = onnx.load(exported)
    del no_metadata.metadata_props[:]
    onnx.save(no_metadata, tmp_path / "bare.onnx")
    with pytest.raises(ModelError, match="missing metadata"):
        PHPQModel(tmp_path / "bare.onnx")

    foreign = onnx.load(exported)
    for initializer in foreign.graph.initializer:
        if initializer.name == CODEBOOKS_NAME:
            initializer.name = "something_else"
            for node in foreign.graph.node:
                node.input[:] = ["something_else" if name == CODEBOOKS_NAME else name for name in node.input]
    onnx.save(foreign, tmp_path / "foreign.onnx")
    with pytest.raises(ModelError, match="no phpq_codebooks"):
        PHPQModel(tmp_path / "foreign.onnx")


def test_export_cli_refuses_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    assert export_main([str(bogus), "-o", str(tmp_path / "x.onnx")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


def test_onnx_evaluation_matches_the_checkpoint_and_never_imports_torch(
    tiny_checkpoint, exported, synthetic_folder, tmp_path
):
    import json
    import subprocess
    import sys

    import onnx

    root = Path(__file__).resolve().parents[1]
    common = ["--data", str(synthetic_folder), "--protocol", "val", "--workers", "0", "--json"]
    # the checkpoint's report fuses at the model's fixed weight, in one scan: the same for --model, whose
    # search steps after the first scan are switched off in its metadata
    weight = str(load_checkpoint(tiny_checkpoint)["model_config"]["fusion_weight"])
    single_scan = onnx.load(str(exported))
    props = {entry.key: entry.value for entry in single_scan.metadata_props}
    props.update({f"phpq.{key}": "{}" for key in ("neighbour_rerank", "collection_centring")})
    onnx.helper.set_model_props(single_scan, {**props, "phpq.query_expansion": "0"})
    onnx.save(single_scan, str(tmp_path / "single-scan.onnx"))
    script = (
        "import sys, json\n"
        "from phpq_train.cli import eval_main\n"
        f"eval_main({['--model', str(tmp_path / 'single-scan.onnx'), '--weight', weight, *common]!r})\n"
        "assert 'torch' not in sys.modules, 'the ONNX evaluation path imported torch'\n"
    )
    onnx_run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=300)
    assert onnx_run.returncode == 0, onnx_run.stderr[-2000:]
    onnx_report = json.loads(onnx_run.stdout.strip().splitlines()[-1])
    torch_run = subprocess.run(
        [
            sys.executable,
            "-c",
            f"from phpq_train.cli import eval_main; eval_main({['--checkpoint', str(tiny_checkpoint), *common]!r})",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
    )
    assert torch_run.returncode == 0, torch_run.stderr[-2000:]
    torch_report = json.loads(torch_run.stdout.strip().splitlines()[-1])
    # --model ranks as `phpq search` does (fused, int8 descriptors); the checkpoint's fused key uses floats
    (fused_key,) = [key for key in torch_report if key.startswith("fused@") and key.endswith("_mAP@all")]
    assert onnx_report["mAP@all"] == pytest.approx(torch_report[fused_key], abs=0.005)
    assert onnx_report["queries"] == 8 and onnx_report["database"] == 32


def test_int8_variant_runs_and_keeps_float_codebooks(exported, synthetic_folder, tmp_path):
    from phpq_train.export.quantize import quantize_int8

    photos = [p.path for p in load_photo_set(synthetic_folder).photos]
    output = tmp_path / "tiny.int8.onnx"
    model_id = quantize_int8(exported, output, photos[:16], PHPQModel(exported).info.preprocessing)
    fp32, int8 = PHPQModel(exported), PHPQModel(output)
    assert int8.info.metadata["precision"] == "int8" and int8.info.model_id == model_id != fp32.info.model_id
    np.testing.assert_array_equal(int8.codebooks, fp32.codebooks)
    assert any(node.op_type == "QuantizeLinear" for node in onnx.load(output).graph.node)
    encoded8, encoded32 = int8.encode_paths(photos), fp32.encode_paths(photos)
    assert encoded8.subvectors.shape == encoded32.subvectors.shape and encoded8.codes.shape == encoded32.codes.shape
    assert (
        encoded8.codes == encoded32.codes
    ).mean() > 0.3  # a random tiny model; the real agreement is in bench/int8.py


def test_fp16_weight_storage_halves_the_file_and_keeps_parity(tiny_checkpoint, exported, synthetic_folder, tmp_path):
    payload = load_checkpoint(tiny_checkpoint)
    model = model_from_checkpoint(payload)
    output = tmp_path / "tiny.fp16.onnx"
    export_checkpoint(model, payload, output, fp16_weights=True)
    assert output.stat().st_size < 0.6 * exported.stat().st_size
    runtime = PHPQModel(output)
    assert runtime.info.metadata["weights"] == "float16"
    assert runtime.codebooks.dtype == np.float32
    report = check_parity(model, output, [p.path for p in load_photo_set(synthetic_folder).photos])
    assert report.ok, str(report)


def test_int8_next_to_fp16_weights_is_quantized_from_float32(tiny_checkpoint, exported, tmp_path):
    output = tmp_path / "both.onnx"
    arguments = [str(tiny_checkpoint), "-o", str(output), "--parity-photos", "8", "--fp16-weights", "--int8"]
    assert export_main([*arguments, "--calibration-photos", "8"]) == 0
    int8 = output.with_suffix(".int8.onnx")
    assert int8.stat().st_size == pytest.approx(exported.with_suffix(".int8.onnx").stat().st_size, rel=0.05)
    assert PHPQModel(int8).info.metadata["precision"] == "int8"


def test_the_shipped_default_model_loads_and_encodes():
    path = Path(__file__).resolve().parents[1] / "assets" / "models" / "phpq-cub200-lite0-64bit.onnx"
    model = PHPQModel(path)
    assert (model.info.bits, model.info.n_subspaces, model.info.n_codewords, model.info.input_size) == (64, 8, 256, 288)
    assert len(model.info.class_names) == 200 and model.info.metadata["weights"] == "float16"
    recipe = load_config().model
    general = json.loads(model.info.metadata["general_descriptor"])  # the trained descriptor and the view
    assert general == {"dim": recipe.general_dim, "weight": recipe.general_weight, "from": "trained_head"}
    assert model.info.descriptor_dim == 256 + recipe.general_dim and model.info.search.fusion_weight == 0.5
    assert model.info.search.query_expansion == 3
    assert model.info.search.gate == CollectionGate.from_json(json.dumps(recipe.collection_gate))
    assert ClassPrototypes.from_model(model.info) is not None  # the gate judges a collection by them
    assert model.info.search.adaptive == AdaptiveWeight(**load_config().model.adaptive_weight)
    assert model.info.search.rerank == NeighbourRerank(**load_config().model.neighbour_rerank)
    assert model.info.search.centring == CollectionCentring(**load_config().model.collection_centring)
    assert model.info.preprocessing == load_config().model.encode_preprocessing
    assert model.info.metadata["format_version"] == "3" and model.info.zoom == Zoom(**load_config().model.zoom)
    encoded = model.encode(np.zeros((2, 3, 288, 288), np.float32))
    assert encoded.subvectors.shape == (2, 8, 128) and encoded.codes.shape == (2, 8)
    assert encoded.descriptors.shape == (2, 256 + recipe.general_dim) and encoded.attention.shape == (2, 9, 9)
    np.testing.assert_allclose(np.linalg.norm(encoded.descriptors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(model.codebooks, axis=-1), 1.0, atol=1e-5)


THOROUGH_MODEL_NAME = "phpq-cub200-lite0-64bit-thorough.onnx"


def test_the_shipped_thorough_model_is_the_default_exported_with_its_recipe():
    """The second bundled model: the default's weights with phpq_train/recipes/thorough.toml's changes (its
    general descriptor predicted from the trained head, zoom on every photo and weights), listed after the
    default."""
    models = Path(__file__).resolve().parents[1] / "assets" / "models"
    default, thorough = PHPQModel(models / DEFAULT_MODEL_NAME), PHPQModel(models / THOROUGH_MODEL_NAME)
    recipe = tomllib.loads((Path(phpq_train.__file__).parent / "recipes" / "thorough.toml").read_text())
    info = thorough.info
    assert [path.name for path in bundled_models()] == [DEFAULT_MODEL_NAME, THOROUGH_MODEL_NAME]
    assert info.model_id != default.info.model_id and info.metadata["format_version"] == "3"
    assert info.zoom == Zoom(**recipe["model"]["zoom"]) and info.search.adaptive is None
    assert info.search.fusion_weight == recipe["model"]["fusion_weight"]
    general = json.loads(info.metadata["general_descriptor"])
    assert (general["dim"], general["weight"]) == (recipe["model"]["general_dim"], recipe["model"]["general_weight"])
    assert general["from"] == recipe["model"]["general_from"] == "trained_head"  # no second pass in its graph
    assert {key: info.metadata[key] for key in ("title", "summary")} == recipe["description"]
    assert info.search.rerank == default.info.search.rerank and info.search.centring == default.info.search.centring
    np.testing.assert_array_equal(thorough.codebooks, default.codebooks)  # the same weights
    assert info.class_names == default.info.class_names and ClassPrototypes.from_model(info) is not None
    encoded = thorough.encode(np.zeros((2, 3, 288, 288), np.float32))
    assert encoded.descriptors.shape == (2, 256 + general["dim"]) and encoded.codes.shape == (2, 8)
    np.testing.assert_array_equal(encoded.codes, default.encode(np.zeros((2, 3, 288, 288), np.float32)).codes)


def test_a_mirror_averaged_model_encodes_a_photo_and_its_mirror_image_alike(tiny_checkpoint, exported, tmp_path):
    output = tmp_path / "tiny.mirror.onnx"
    assert export_main([str(tiny_checkpoint), "-o", str(output), "--parity-photos", "8", "--mirror-average"]) == 0
    mirrored, plain = PHPQModel(output, prefer_cuda=False), PHPQModel(exported, prefer_cuda=False)
    assert mirrored.info.metadata["mirror_average"] == "true" and plain.info.metadata["mirror_average"] == "false"
    images = np.random.default_rng(0).normal(size=(3, 3, 80, 80)).astype(np.float32)
    flipped = np.ascontiguousarray(images[..., ::-1])
    both = mirrored.encode(images), mirrored.encode(flipped)
    np.testing.assert_allclose(both[0].subvectors, both[1].subvectors, atol=1e-5)
    np.testing.assert_allclose(both[0].descriptors, both[1].descriptors, atol=1e-5)
    np.testing.assert_array_equal(both[0].codes, both[1].codes)
    # the average of the two passes, not either one: the plain model tells a photo from its mirror image
    plain_both = plain.encode(images), plain.encode(flipped)
    assert not np.allclose(plain_both[0].descriptors, plain_both[1].descriptors, atol=1e-3)
    np.testing.assert_allclose(
        mirrored.encode(images[:1]).subvectors, mirrored.encode(images).subvectors[:1], atol=1e-5
    )  # each photo of a batch is averaged with its own mirror image


def test_export_can_encode_at_another_size(tiny_checkpoint, synthetic_folder, tmp_path):
    output = tmp_path / "tiny.96.onnx"
    assert export_main([str(tiny_checkpoint), "-o", str(output), "--parity-photos", "8", "--encode-size", "96"]) == 0
    model = PHPQModel(output, prefer_cuda=False)
    assert model.info.preprocessing == replace(TINY.encode_preprocessing, input_size=96)
    photo = load_photo_set(synthetic_folder).photos[0].path
    assert model.encode_paths([photo]).codes.shape == (1, 4)


def test_export_can_take_the_recipes_search_settings(synthetic_folder, tmp_path):
    """A checkpoint trained before the search was chosen again exports with the recipe's search settings
    when asked, and with its own otherwise; nothing trained changes."""
    older = replace(TINY, fusion_weight=0.9, adaptive_weight={}, neighbour_rerank={}, query_expansion=1)
    torch.manual_seed(0)
    model = PHPQ(older)
    model.head.quantizer.init_from_kmeans(model.head.fusion(torch.randn(64, model.layout.size)))
    checkpoint = tmp_path / "older.pt"
    save_checkpoint(
        checkpoint, model, replace(RECIPE, data=str(synthetic_folder), model=older), ["a", "b", "c", "d"], 1
    )
    own, recipe = tmp_path / "own.onnx", tmp_path / "recipe.onnx"
    assert export_main([str(checkpoint), "-o", str(own), "--parity-photos", "4"]) == 0
    assert export_main([str(checkpoint), "-o", str(recipe), "--parity-photos", "4", "--search-from-recipe"]) == 0
    own_info, recipe_info = PHPQModel(own, prefer_cuda=False).info, PHPQModel(recipe, prefer_cuda=False).info
    assert own_info.search.fusion_weight == 0.9 and own_info.search.adaptive is None
    assert own_info.search.rerank is None and own_info.search.query_expansion == 1
    assert recipe_info.search.fusion_weight == RECIPE.model.fusion_weight
    assert recipe_info.search.adaptive == AdaptiveWeight(**RECIPE.model.adaptive_weight)
    assert recipe_info.search.rerank == NeighbourRerank(**RECIPE.model.neighbour_rerank)
    assert recipe_info.search.centring == CollectionCentring(**RECIPE.model.collection_centring)
    assert recipe_info.search.query_expansion == RECIPE.model.query_expansion
    assert recipe_info.model_id == own_info.model_id  # the same graph: an index keeps its codes


def test_a_title_and_summary_for_users_are_written_and_carried_by_an_export_again(tiny_checkpoint, exported, tmp_path):
    """``--title``/``--summary`` describe the model in a user's words (the window's model list); exporting
    the file again keeps them unless told otherwise, and they never change the model id."""
    titled, again, retitled = tmp_path / "titled.onnx", tmp_path / "again.onnx", tmp_path / "retitled.onnx"
    arguments = [str(tiny_checkpoint), "-o", str(titled), "--parity-photos", "4"]
    assert export_main([*arguments, "--title", "Thorough", "--summary", "Better on other birds."]) == 0
    info = PHPQModel(titled, prefer_cuda=False).info
    assert (info.metadata["title"], info.metadata["summary"]) == ("Thorough", "Better on other birds.")
    assert export_main([str(titled), "-o", str(again), "--search-from-recipe"]) == 0  # metadata only
    assert export_main([str(titled), "-o", str(retitled), "--title", "Careful", "--zoom", "{}"]) == 0  # new graph
    again_info, retitled_info = PHPQModel(again, prefer_cuda=False).info, PHPQModel(retitled, prefer_cuda=False).info
    assert (again_info.metadata["title"], again_info.metadata["summary"]) == ("Thorough", "Better on other birds.")
    assert (retitled_info.metadata["title"], retitled_info.metadata["summary"]) == ("Careful", "Better on other birds.")
    assert again_info.model_id == info.model_id == PHPQModel(exported, prefer_cuda=False).info.model_id


def test_a_toml_file_of_changes_sets_model_fields_and_the_description(exported, tmp_path, capsys):
    """``--config``: each [model] field replaces the model's (a table too: ``adaptive_weight = {}`` turns the
    per-query weight off), [description] names it; an unknown or invalid field is refused with a message."""
    changes = tmp_path / "changes.toml"
    changes.write_text('[model]\nfusion_weight = 0.3\nadaptive_weight = {}\n[description]\ntitle = "Careful"\n')
    output = tmp_path / "changed.onnx"
    assert export_main([str(exported), "-o", str(output), "--config", str(changes)]) == 0
    info = PHPQModel(output, prefer_cuda=False).info
    assert info.search.fusion_weight == 0.3 and info.search.adaptive is None and info.metadata["title"] == "Careful"
    assert info.model_id == PHPQModel(exported, prefer_cuda=False).info.model_id  # search settings only
    for bad in ("[model]\nno_such_field = 1\n", "[model]\nfusion_weight = 0.3\nzoom = { max_side = 2.0 }\n"):
        changes.write_text(bad)
        assert export_main([str(exported), "-o", str(tmp_path / "bad.onnx"), "--config", str(changes)]) == 2
        assert "--config" in capsys.readouterr().err and not (tmp_path / "bad.onnx").exists()
