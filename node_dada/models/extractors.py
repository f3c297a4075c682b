"""Feature extractors ``phi`` of the learned variant (docs/design.md sections 2 and 5).

The learned diffusion coefficients come from features ``F = phi(cat(guide, I0 - mean))``
with 64 channels at the guide's resolution. Every extractor here maps
``(B, in_channels, H, W) -> (B, out_channels, H, W)`` for any ``H, W`` and any number
of input channels, and carries an ``out_channels`` attribute:

- ``resnet50`` (the paper's): a U-Net with a torchvision-compatible ResNet-50 encoder,
  the input upsampled x2 (bicubic) before the network and the output average-pooled
  x2 after it, as in the reference implementation. ``resnet34``/``resnet18`` are the
  same recipe with a BasicBlock encoder. Meant for GPUs.
- ``light`` (1.8 M parameters): a narrow ResNet-18-like U-Net with a strided stem and
  a decoder that ends at half resolution (``pixel_shuffle`` to full resolution), so
  almost no work happens at full resolution; it trains on two CPU cores (docs/design.md
  section 10: early downsampling is what makes CNNs cheap there).
- ``none``: :class:`IdentityExtractor`, the learning-free features ``cat(guide, I0)``.

The encoders use torchvision's module names (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ...) so an ImageNet state dict saved by torchvision loads
into ``model.encoder`` (:func:`node_dada.models.weights.load_encoder_weights`), with no
torchvision dependency.

Example:
    >>> import torch
    >>> phi = build_extractor("light", in_channels=4)
    >>> phi(torch.rand(1, 4, 50, 70)).shape
    torch.Size([1, 64, 50, 70])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from node_dada.errors import InputTypeError, InputValueError, ShapeError
from node_dada.models.weights import load_encoder_weights

__all__ = [
    "EXTRACTORS",
    "BasicBlock",
    "Bottleneck",
    "IdentityExtractor",
    "ResNetEncoder",
    "ResNetUNet",
    "build_extractor",
]

#: Names accepted by :func:`build_extractor`.
EXTRACTORS = ("resnet50", "resnet34", "resnet18", "light", "none")


def _conv3x3(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """torchvision's ``downsample`` branch: 1x1 conv + BN, only where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        _conv1x1(in_channels, out_channels, stride=stride), nn.BatchNorm2d(out_channels)
    )


class BasicBlock(nn.Module):
    """torchvision's ResNet-18/34 block: ``(B, C_in, H, W) -> (B, width, H/s, W/s)``."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, *, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, width, stride=stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(in_channels, width, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (v1.5: stride on the 3x3 conv).

    ``(B, C_in, H, W) -> (B, 4 * width, H/s, W/s)``.
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, *, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride=stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetEncoder(nn.Module):
    """ResNet trunk (no pooling/``fc`` head) returning five feature maps.

    ``(B, in_channels, H, W)`` with ``H, W`` multiples of 32 ->
    ``[(B, channels[i], H / 2^(i+1), W / 2^(i+1)) for i in 0..4]``: the stem output
    (stride 2), then ``layer1`` .. ``layer4`` (strides 4, 8, 16, 32).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        in_channels: input channels of ``conv1``.
        widths: block widths per stage (torchvision's ``planes``).
        stem_channels: output channels of ``conv1``.
        stem: ``"imagenet"``: torchvision's 7x7/2 conv + 3x3/2 max pool (module names
            and shapes match torchvision, so ImageNet weights load); ``"strided"``: a
            3x3/2 conv, with ``layer1`` striding instead of the max pool (cheaper).
    """

    strides = (2, 4, 8, 16, 32)

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_channels: int = 64,
        stem: str = "imagenet",
    ) -> None:
        super().__init__()
        if stem not in ("imagenet", "strided"):
            raise InputValueError(f"stem: expected 'imagenet' or 'strided', got {stem!r}")
        if len(layers) != 4 or len(widths) != 4:
            raise InputValueError(
                f"layers/widths: expected 4 stages each, got {tuple(layers)} and {tuple(widths)}"
            )
        self.in_channels = in_channels
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, stride=2, padding=1)
            first_stride = 1
        else:
            self.conv1 = _conv3x3(in_channels, stem_channels, stride=2)
            self.maxpool = nn.Identity()
            first_stride = 2
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        channels = [stem_channels]
        for index, (count, width) in enumerate(zip(layers, widths, strict=True)):
            stride = first_stride if index == 0 else 2
            blocks = []
            for position in range(count):
                blocks.append(block(channels[-1] if position == 0 else width * block.expansion,
                                    width, stride=stride if position == 0 else 1))
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            channels.append(width * block.expansion)
        self.channels = tuple(channels)
        _init_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        features = [stem]
        out = self.maxpool(stem)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            out = layer(out)
            features.append(out)
        return features


class _ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            _conv3x3(in_channels, out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class _DecoderBlock(nn.Module):
    """x2 nearest upsampling, concatenation with the skip, then ``num_convs`` conv-BN-ReLU.

    ``(B, C_in, h, w), (B, C_skip, 2h, 2w) -> (B, C_out, 2h, 2w)``.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, *, num_convs: int = 2
    ) -> None:
        super().__init__()
        convs = [_ConvBNReLU(in_channels + skip_channels, out_channels)]
        convs += [_ConvBNReLU(out_channels, out_channels) for _ in range(num_convs - 1)]
        self.convs = nn.Sequential(*convs)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class ResNetUNet(nn.Module):
    """U-Net on a :class:`ResNetEncoder`: ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.

    By default the decoder follows segmentation-models-pytorch's ``Unet`` (five x2
    upsampling blocks with skips from ``layer3..1`` and the stem, the last one at full
    resolution without a skip, then a 3x3 head without activation), so the ``resnet50``
    configuration has the reference implementation's architecture.

    ``pixel_shuffle=True`` (the ``light`` configuration) stops the decoder at half
    resolution, with ``4 * c`` channels that ``pixel_shuffle`` rearranges into ``c``
    channels at full resolution, followed by the head: still one feature vector per
    full-resolution pixel, but computed by convolutions on a quarter of the pixels
    (narrow convolutions at full resolution are the slowest part of a U-Net on a CPU).

    Any ``H, W`` works: the input is padded (edge replication, split evenly between
    the two sides) to a multiple of the total stride 32, at least 64, so that batch
    normalisation sees more than one value per channel at the coarsest level even for a
    single image, and the output is cropped back.

    Args:
        encoder: the trunk; ImageNet weights go to ``model.encoder``.
        out_channels: feature channels ``K`` of the output.
        decoder_channels: output channels of the decoder blocks, coarse to fine: five
            values (down to full resolution), or four with ``pixel_shuffle`` (the last
            one a multiple of 4).
        convs_per_block: conv-BN-ReLU layers per decoder block.
        input_skip: also feed the (padded) input to the finest decoder block, at full
            resolution, or space-to-depth rearranged (``pixel_unshuffle``) to half
            resolution with ``pixel_shuffle``; this gives pixel-accurate edges.
        pixel_shuffle: end the decoder at half resolution and ``pixel_shuffle`` its
            output to full resolution (see above).
        upsample_input: upsample the input x2 (bicubic) before the network and
            average-pool the output x2 after it (the paper's recipe).
        head_kernel_size: kernel of the final convolution.
    """

    def __init__(
        self,
        encoder: ResNetEncoder,
        *,
        out_channels: int = 64,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        convs_per_block: int = 2,
        input_skip: bool = False,
        pixel_shuffle: bool = False,
        upsample_input: bool = False,
        head_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        num_blocks = 4 if pixel_shuffle else 5
        if len(decoder_channels) != num_blocks or (pixel_shuffle and decoder_channels[-1] % 4):
            raise InputValueError(
                f"decoder_channels: expected {num_blocks} values (one per x2 upsampling"
                f"{', the last a multiple of 4 with pixel_shuffle' if pixel_shuffle else ''}), "
                f"got {tuple(decoder_channels)}"
            )
        self.encoder = encoder
        self.in_channels = encoder.in_channels
        self.out_channels = out_channels
        self.input_skip = input_skip
        self.pixel_shuffle = pixel_shuffle
        self.upsample_input = upsample_input
        self.stride = encoder.strides[-1]
        # Skip channels, coarse to fine: layer3, layer2, layer1, stem (+ the input).
        skips = list(encoder.channels[-2::-1])
        input_channels = encoder.in_channels if input_skip else 0
        if pixel_shuffle:
            skips[-1] += 4 * input_channels
        else:
            skips.append(input_channels)
        ins = [encoder.channels[-1], *decoder_channels[:-1]]
        self.decoder = nn.ModuleList(
            _DecoderBlock(c_in, c_skip, c_out, num_convs=convs_per_block)
            for c_in, c_skip, c_out in zip(ins, skips, decoder_channels, strict=True)
        )
        head_in = decoder_channels[-1] // 4 if pixel_shuffle else decoder_channels[-1]
        self.head = nn.Conv2d(head_in, out_channels, head_kernel_size,
                              padding=head_kernel_size // 2)
        _init_weights(self.decoder)

    def forward(self, x: Tensor) -> Tensor:
        """Features ``(B, out_channels, H, W)`` of ``x`` ``(B, in_channels, H, W)``."""
        _check_input(x, self.in_channels)
        if self.upsample_input:
            x = F.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)
        x, crop = _pad_to_multiple(x, self.stride)
        features = self.encoder(x)
        skips: list[Tensor | None] = list(features[-2::-1])
        if self.pixel_shuffle and self.input_skip:
            skips[-1] = torch.cat([features[0], F.pixel_unshuffle(x, 2)], dim=1)
        elif not self.pixel_shuffle:
            skips.append(x if self.input_skip else None)
        out = features[-1]
        for block, skip in zip(self.decoder, skips, strict=True):
            out = block(out, skip)
        if self.pixel_shuffle:
            out = F.pixel_shuffle(out, 2)
        out = self.head(out)[..., crop[0], crop[1]]
        if self.upsample_input:
            out = F.avg_pool2d(out, 2)
        return out


    @property
    def receptive_radius(self) -> int:
        """An upper bound, in input pixels, of how far an output pixel's value reaches
        into the input: the sum over the deepest path of ``(k - 1) / 2`` times the
        stride at which each convolution or pooling runs, plus one stride of the
        coarsest grid (where a pixel falls inside its block), for the paper's recipe
        also the bicubic upsampling and pooling around it. Inputs further apart than
        this do not interact (tiled inference relies on it; tested)."""
        radius, jump = 0, 1
        encoder = self.encoder
        for name, module in encoder.named_modules():  # registration order = run order
            if "downsample" in name:  # the shortcut runs beside the block, not after it
                continue
            if isinstance(module, nn.Conv2d | nn.MaxPool2d):
                size = module.kernel_size if isinstance(module.kernel_size, int) else (
                    module.kernel_size[0])
                stride = module.stride if isinstance(module.stride, int) else module.stride[0]
                radius += (size - 1) // 2 * jump
                jump *= stride
        for block in self.decoder:
            jump //= 2
            radius += sum((conv.kernel_size[0] - 1) // 2 * jump
                          for conv in block.modules() if isinstance(conv, nn.Conv2d))
        if self.pixel_shuffle:
            jump //= 2
        radius += (self.head.kernel_size[0] - 1) // 2 * jump + self.stride
        if self.upsample_input:  # the network sees the input at twice its size
            radius = (radius + 2) // 2 + 2
        return radius


class IdentityExtractor(nn.Module):
    """The learning-free "extractor": ``(B, C, H, W) -> (B, C, H, W)``, the input itself.

    In the learning-free variant the features are ``cat(guide, I0)`` (docs/design.md
    section 2); this module lets that variant sit in the same slot as the CNNs.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = in_channels

    receptive_radius = 0

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels)
        return x


def _check_input(x: object, channels: int) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(
            f"features input: expected a (B, {channels}, H, W) tensor (guide channels + 1 "
            f"depth channel), got {shape}; build the extractor with in_channels matching "
            "the guide"
        )
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ShapeError(f"features input: expected H, W >= 1, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputTypeError(
            f"features input: expected a floating-point tensor, got {x.dtype}; cast with .float()"
        )


def _pad_to_multiple(x: Tensor, multiple: int) -> tuple[Tensor, tuple[slice, slice]]:
    """Replicate-pad ``(B, C, H, W)`` to a multiple of ``multiple`` (at least twice it).

    Returns the padded tensor and the slices that crop it back to ``H x W``.
    """
    height, width = x.shape[-2:]
    target_h = max(-(-height // multiple), 2) * multiple
    target_w = max(-(-width // multiple), 2) * multiple
    top, left = (target_h - height) // 2, (target_w - width) // 2
    bottom, right = target_h - height - top, target_w - width - left
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), mode="replicate")
    return x, (slice(top, top + height), slice(left, left + width))


def _init_weights(module: nn.Module) -> None:
    """torchvision's ResNet initialisation (He normal, fan-out; BN weight 1, bias 0)."""
    for child in module.modules():
        if isinstance(child, nn.Conv2d):
            nn.init.kaiming_normal_(child.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(child, nn.BatchNorm2d):
            nn.init.ones_(child.weight)
            nn.init.zeros_(child.bias)


def _resnet_unet(
    name: str, *, in_channels: int, out_channels: int
) -> ResNetUNet:
    block, layers = {
        "resnet18": (BasicBlock, (2, 2, 2, 2)),
        "resnet34": (BasicBlock, (3, 4, 6, 3)),
        "resnet50": (Bottleneck, (3, 4, 6, 3)),
    }[name]
    encoder = ResNetEncoder(block, layers, in_channels=in_channels)
    return ResNetUNet(encoder, out_channels=out_channels, upsample_input=True)


def _light_unet(*, in_channels: int, out_channels: int) -> ResNetUNet:
    # One BasicBlock per stage at half ResNet-18 width behind a strided 3x3 stem; the
    # decoder stops at half resolution (the input joins there, space-to-depth) and only
    # pixel_shuffle and a 1x1 head run at full resolution. Measured on 2 cores, this is
    # about 2x cheaper than a decoder with a full-resolution 3x3 block (docs/design.md
    # section 10: full-resolution stages dominate the CPU time).
    encoder = ResNetEncoder(
        BasicBlock, (1, 1, 1, 1), in_channels=in_channels, widths=(32, 64, 128, 256),
        stem_channels=16, stem="strided",
    )
    return ResNetUNet(
        encoder, out_channels=out_channels, decoder_channels=(128, 64, 32, 48),
        convs_per_block=1, input_skip=True, pixel_shuffle=True, head_kernel_size=1,
    )


def build_extractor(
    name: str,
    *,
    in_channels: int = 4,
    out_channels: int = 64,
    pretrained: str | Path | None = None,
) -> nn.Module:
    """Build the feature extractor ``name``: ``(B, in_channels, H, W) -> (B, K, H, W)``.

    Args:
        name: one of :data:`EXTRACTORS`: ``"resnet50"`` (paper), ``"resnet34"``,
            ``"resnet18"``, ``"light"`` (CPU), ``"none"`` (learning-free identity).
        in_channels: guide channels + 1 depth channel (4 for RGB).
        out_channels: feature channels ``K``; ignored by ``"none"``, whose features
            are its input (``K = in_channels``).
        pretrained: local torchvision-format ImageNet state dict for the ``resnet*``
            encoders (never downloaded); its RGB ``conv1`` filters are extended to
            ``in_channels`` (see :func:`~node_dada.models.weights.load_encoder_weights`).

    Returns:
        An ``nn.Module`` with an ``out_channels`` attribute.

    Raises:
        InputValueError: unknown ``name``, non-positive channels, or ``pretrained``
            given for an extractor without an ImageNet encoder.
        DataError: ``pretrained`` is missing, corrupt or not a plain weights file.
        ShapeError: ``pretrained`` is for another architecture.
    """
    if name not in EXTRACTORS:
        raise InputValueError(
            f"extractor: unknown name {name!r}; expected one of {', '.join(EXTRACTORS)}"
        )
    for arg, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputValueError(f"{arg}: expected a positive integer, got {value!r}")
    if pretrained is not None and not name.startswith("resnet"):
        raise InputValueError(
            f"pretrained: only the resnet* extractors have an ImageNet encoder, got {name!r}; "
            "leave pretrained unset or pick resnet18/34/50"
        )
    if name == "none":
        return IdentityExtractor(in_channels)
    if name == "light":
        return _light_unet(in_channels=in_channels, out_channels=out_channels)
    model = _resnet_unet(name, in_channels=in_channels, out_channels=out_channels)
    if pretrained is not None:
        load_encoder_weights(model, pretrained)
    return model
