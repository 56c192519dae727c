"""Bad model files are refused with a clear error and the current model stays active; checkpoints are
never unpickled with code."""

from __future__ import annotations

import pathlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from phpq.cli import main as phpq
from phpq.library import Library
from phpq.model import ModelError
from phpq_train.export.cli import export_main


def truncated(source: Path, target: Path) -> None:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])


def random_bytes(source: Path, target: Path) -> None:
    target.write_bytes(np.random.default_rng(3).bytes(100_000))


def missing_metadata(source: Path, target: Path) -> None:
    model = onnx.load(source)
    del model.metadata_props[:]
    onnx.save(model, target)


def wrong_input_shape(source: Path, target: Path) -> None:
    model = onnx.load(source)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = 32
    onnx.save(model, target)


def custom_operator(source: Path, target: Path) -> None:
    model = onnx.load(source)
    model.graph.node.append(helper.make_node("PhpqSecretOp", ["images"], ["secret"], domain="com.example.custom"))
    model.graph.output.append(helper.make_tensor_value_info("secret", onnx.TensorProto.FLOAT, None))
    model.opset_import.append(helper.make_opsetid("com.example.custom", 1))
    onnx.save(model, target)


BAD_MODELS = {
    "truncated": (truncated, r"not a readable ONNX file|cannot be loaded"),
    "random bytes": (random_bytes, r"not a readable ONNX file|cannot be loaded"),
    "missing metadata": (missing_metadata, "missing metadata"),
    "wrong input shape": (wrong_input_shape, r"expects input|cannot be loaded"),
    "custom operator": (custom_operator, "cannot be loaded by ONNX Runtime"),
}


@pytest.mark.parametrize("name", list(BAD_MODELS))
def test_a_bad_model_is_refused_and_the_active_model_stays(name, tmp_path, tiny_model, capsys, tally):
    make, message = BAD_MODELS[name]
    bad = tmp_path / f"{name.replace(' ', '-')}.onnx"
    make(tiny_model, bad)
    database = tmp_path / "data" / "index.sqlite3"
    with Library(database, prefer_cuda=False) as library:
        active, models = library.active_model_id, [record.id for record in library.models()]
        with pytest.raises(ModelError, match=message):
            library.import_model(bad)
        assert library.active_model_id == active and [record.id for record in library.models()] == models
        assert not list(library.models_dir.glob("*.partial"))
    assert phpq(["--db", str(database), "--cpu", "models", "import", str(bad), "--activate"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("phpq: ") and "Traceback" not in error and len(error.splitlines()) == 1
    tally["refusals"] += 1


class Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path, capsys, tally):
    marker = tmp_path / "code-ran"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"model": {"weight": torch.zeros(2)}, "extra": Payload(marker)}, checkpoint)
    assert export_main([str(checkpoint), "-o", str(tmp_path / "out.onnx")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert not marker.exists()
    tally["refusals"] += 1
