import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from phpq.eval.datasets import load_photo_set
from phpq_train.config import load_config
from phpq_train.features import CacheRun, PyramidFeatureExtractor, build_or_load_cache
from phpq_train.inference import BatchRunner, photo_list_digest
from phpq_train.model import PHPQ, RetrievalEncoder


def test_onnxruntime_matches_torch_for_pyramid_features_and_codes():
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    images = torch.randn(3, 3, 96, 96)
    extractor = PyramidFeatureExtractor("efficientnet_lite0", 96)
    fast = BatchRunner(extractor, 96, 1, engine="onnxruntime")
    with torch.inference_mode():
        expected = extractor(images).numpy()
    np.testing.assert_allclose(fast(images)[0], expected, atol=2e-4, rtol=1e-4)

    tiny = replace(load_config().model, input_size=96, dim=32, n_subspaces=4, n_codewords=16, topk=4, n_classes=3)
    model = PHPQ(tiny)
    encoder = RetrievalEncoder(model.eval())
    subvectors, codes, descriptors, attention = BatchRunner(encoder, 96, 4, engine="onnxruntime")(images)
    with torch.inference_mode():
        torch_sub, torch_codes, torch_descriptors, torch_attention = encoder(images)
    np.testing.assert_allclose(subvectors, torch_sub.numpy(), atol=1e-4)
    np.testing.assert_allclose(descriptors, torch_descriptors.numpy(), atol=1e-4)
    assert attention.shape == (3, 3, 3)  # the head's map at 96 px (stride 32)
    np.testing.assert_allclose(attention, torch_attention.numpy(), atol=1e-4)
    assert (codes == torch_codes.numpy()).mean() >= 0.99


def test_feature_cache_is_reused_and_keyed_by_views(synthetic_folder, tmp_path):
    photos = load_photo_set(synthetic_folder).photos[:6]
    first = build_or_load_cache(photos, tmp_path, "efficientnet_lite0", 64, views=2, run=CacheRun(workers=0))
    assert first.features.shape == (2, 6, first.layout.size)
    again = build_or_load_cache(photos, tmp_path, "efficientnet_lite0", 64, views=2, run=CacheRun(workers=0))
    np.testing.assert_array_equal(first.features, again.features)
    assert len(list(tmp_path.iterdir())) == 1
    build_or_load_cache(photos, tmp_path, "efficientnet_lite0", 64, views=3, run=CacheRun(workers=0))
    assert len(list(tmp_path.iterdir())) == 2


def test_photo_list_digest_follows_content_not_location(synthetic_folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_folder, copy)  # new paths and modification times, same bytes
    original = load_photo_set(synthetic_folder).photos
    copied = load_photo_set(copy).photos
    assert photo_list_digest(copied) == photo_list_digest(original)
    changed = copied[0].path
    changed.write_bytes(changed.read_bytes() + b"\0")
    assert photo_list_digest(copied) != photo_list_digest(original)
