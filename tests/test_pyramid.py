from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from phpq_train.config import load_config
from phpq_train.model import HybridFusion, Level, PyramidLayout, PyramidPooling


@pytest.mark.parametrize("size", [7, 8, 14, 28])
def test_pyramid_bins_match_adaptive_pooling(size):
    layout = PyramidLayout((Level("a", 3, (1, 2, 4)),))
    x = torch.randn(2, 3, size, size)
    pooled = PyramidPooling(layout)([x])
    assert pooled.shape == (2, layout.size) == (2, 2 * 3 * 21)
    avg, mx = pooled.view(2, 2, 3, 21).unbind(1)
    expected_avg = torch.cat([F.adaptive_avg_pool2d(x, g).flatten(2) for g in (1, 2, 4)], dim=2)
    expected_max = torch.cat([F.adaptive_max_pool2d(x, g).flatten(2) for g in (1, 2, 4)], dim=2)
    torch.testing.assert_close(avg, expected_avg)
    torch.testing.assert_close(mx, expected_max)


def test_layout_drops_fine_grids_on_small_maps_and_gathers_sub_layouts():
    layout = PyramidLayout.build(("stride8", "head"), (4, 6), (8, 32), 224, (1, 2, 4))
    assert [level.grids for level in layout.levels] == [(1, 2, 4), (1, 2)]
    assert PyramidLayout.build(("stride8", "head"), (4, 6), (8, 32), 256, (1, 2, 4)) == layout
    maps = [torch.randn(2, 4, 28, 28), torch.randn(2, 6, 7, 7)]
    full = PyramidPooling(layout)(maps)
    sub = PyramidLayout((Level("head", 6, (1,)),))
    torch.testing.assert_close(full[:, layout.gather_index(sub)], PyramidPooling(sub)([maps[1]]))
    torch.testing.assert_close(full[:, layout.global_average_index("head")], maps[1].mean(dim=(2, 3)))
    torch.testing.assert_close(full[:, layout.global_max_index("head")], maps[1].amax(dim=(2, 3)))


@pytest.mark.parametrize("mode", ["sum", "concat", "avg", "max"])
def test_hybrid_fusion_shapes(mode):
    layout = PyramidLayout((Level("a", 3, (1, 2)), Level("b", 5, (1,))))
    fusion = HybridFusion(layout, mode, dim=16, dropout=0.0)
    assert fusion(torch.randn(4, layout.size)).shape == (4, 16)


def test_hybrid_sum_starts_as_the_mean_of_max_and_avg():
    layout = PyramidLayout((Level("a", 2, (1,)),))
    fusion = HybridFusion(layout, "sum", dim=2, dropout=0.0)
    with torch.no_grad():
        fusion.projection.weight.copy_(torch.eye(2))
        fusion.projection.bias.zero_()
    pooled = torch.tensor([[1.0, 3.0, 5.0, 9.0]])  # avg (1, 3), max (5, 9)
    expected = F.layer_norm(torch.tensor([[3.0, 6.0]]), (2,))
    torch.testing.assert_close(fusion(pooled), expected)


def test_model_config_validates():
    recipe = load_config().model
    with pytest.raises(ValueError, match="divisible"):
        replace(recipe, dim=100, n_subspaces=8)
    with pytest.raises(ValueError, match="topk"):
        replace(recipe, topk=0)
    with pytest.raises(ValueError, match="hybrid"):
        replace(recipe, hybrid="median")
    assert replace(recipe, n_subspaces=6, dim=192).bits == 48
