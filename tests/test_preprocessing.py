"""The model file drives preprocessing: input size, resize ratio and pixel scaling come from its metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from phpq.db import EncodedImage
from phpq.imaging import Preprocessing, load_and_preprocess
from phpq.index import encode_pending
from phpq.model import METADATA_PREFIX, ModelError, PHPQModel
from tests.conftest import write_photo


def with_metadata(source: Path, target: Path, **values: str) -> Path:
    """A copy of the model ``source`` whose ``phpq.*`` metadata has ``values`` instead."""
    proto = onnx.load(str(source))
    props = {prop.key: prop.value for prop in proto.metadata_props}
    props.update({METADATA_PREFIX + key: value for key, value in values.items()})
    del proto.metadata_props[:]
    for key, value in props.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(target))
    return target


def reference_input(path: Path, size: int, short_side: int, offset: float, scale: float) -> np.ndarray:
    """The network input written out by hand: short side resized, centre crop, (pixel - offset) / scale."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    factor = short_side / min(width, height)
    image = image.resize((round(width * factor), round(height * factor)), Image.Resampling.BILINEAR)
    left, top = (image.width - size) // 2, (image.height - size) // 2
    array = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)
    return ((array - offset) / scale).transpose(2, 0, 1)


def test_a_model_exported_with_other_pixel_values_is_fed_accordingly(tiny_model, tmp_path):
    default = PHPQModel(tiny_model, prefer_cuda=False)
    size = default.info.input_size
    assert default.info.preprocessing == Preprocessing(size)  # what phpq-export writes for EfficientNet-Lite
    other = PHPQModel(
        with_metadata(tiny_model, tmp_path / "other.onnx", pixel_offset="0.0", pixel_scale="255.0", resize_ratio="1.5"),
        prefer_cuda=False,
    )
    assert other.info.preprocessing == Preprocessing(size, 1.5, 0.0, 255.0)
    photo = write_photo(tmp_path / "photos" / "bird.png", label=1, index=3, size=160)
    expected = reference_input(photo, size, round(1.5 * size), 0.0, 255.0)
    np.testing.assert_allclose(load_and_preprocess(photo, other.info.preprocessing), expected, atol=0.02)
    wanted = other.encode(expected[None])
    assert not np.array_equal(
        wanted.subvectors, default.encode(load_and_preprocess(photo, Preprocessing(size))[None]).subvectors
    )

    # both ways the app encodes photos use the model's values: encode_paths and the indexer
    np.testing.assert_allclose(other.encode_paths([photo]).subvectors, wanted.subvectors, atol=1e-3)
    stored: list[EncodedImage] = []
    encode_pending(other, [(1, photo)], stored.extend)
    assert stored[0].error is None and stored[0].code == other.encode_paths([photo]).codes[0].tobytes()


@pytest.mark.parametrize("values", [{"pixel_scale": "0"}, {"resize_ratio": "0.5"}, {"pixel_offset": "grey"}])
def test_malformed_pixel_metadata_is_refused_with_a_message(tiny_model, tmp_path, values):
    broken = with_metadata(tiny_model, tmp_path / "broken.onnx", **values)
    with pytest.raises(ModelError, match="malformed metadata"):
        PHPQModel(broken, prefer_cuda=False)
