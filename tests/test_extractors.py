from __future__ import annotations

import pytest
import torch

from node_dada.errors import InputTypeError, InputValueError, NodeDadaError, ShapeError
from node_dada.models.extractors import (
    EXTRACTORS,
    BasicBlock,
    Bottleneck,
    IdentityExtractor,
    ResNetEncoder,
    ResNetUNet,
    _pad_to_multiple,
    build_extractor,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def resnet50() -> torch.nn.Module:
    return build_extractor("resnet50")  # built once: 32 M parameters take a while to draw


@pytest.mark.parametrize(
    ("name", "shape"),
    [
        ("light", (1, 4, 50, 70)),
        ("light", (2, 4, 33, 17)),
        ("light", (1, 4, 1, 1)),
        ("light", (1, 4, 64, 64)),
        ("resnet34", (1, 4, 30, 20)),
        ("resnet18", (2, 4, 45, 31)),
    ],
)
def test_output_has_input_size_and_64_channels(name: str, shape: tuple[int, ...]) -> None:
    phi = build_extractor(name)
    out = phi(torch.rand(shape))
    assert phi.out_channels == 64
    assert out.shape == (shape[0], 64, *shape[2:])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("shape", [(1, 4, 64, 64), (1, 4, 23, 41)])
def test_resnet50_output_has_input_size(resnet50: torch.nn.Module, shape) -> None:
    with torch.no_grad():
        out = resnet50.eval()(torch.rand(shape))
    assert resnet50.out_channels == 64
    assert out.shape == (shape[0], 64, *shape[2:])


@pytest.mark.parametrize("in_channels", [2, 6])
@pytest.mark.parametrize("name", ["light", "resnet18", "none"])
def test_any_number_of_input_channels(name: str, in_channels: int) -> None:
    phi = build_extractor(name, in_channels=in_channels, out_channels=32)
    out = phi(torch.rand(2, in_channels, 40, 36))
    expected = in_channels if name == "none" else 32
    assert phi.out_channels == expected
    assert out.shape == (2, expected, 40, 36)


@pytest.mark.parametrize("name", ["light", "none"])
def test_wrong_channel_count_raises_shape_error(name: str) -> None:
    phi = build_extractor(name, in_channels=4)
    with pytest.raises(ShapeError, match=r"\(B, 4, H, W\).*\(1, 3, 32, 32\)"):
        phi(torch.rand(1, 3, 32, 32))
    with pytest.raises(ShapeError):
        phi(torch.rand(4, 32, 32))
    with pytest.raises(ShapeError, match="H, W >= 1"):
        phi(torch.rand(1, 4, 0, 5))
    with pytest.raises(InputTypeError, match="floating-point"):
        phi(torch.zeros(1, 4, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("name", ["light", "resnet50"])
def test_gradients_reach_every_parameter(name: str, resnet50: torch.nn.Module) -> None:
    phi = (resnet50 if name == "resnet50" else build_extractor(name)).train()
    phi.zero_grad(set_to_none=True)
    phi(torch.rand(2, 4, 32, 38)).square().mean().backward()
    for param_name, param in phi.named_parameters():
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


def test_light_is_small() -> None:
    assert 0.5e6 < _count(build_extractor("light")) < 2.5e6


def test_resnet50_matches_the_reference_architecture_size(resnet50: torch.nn.Module) -> None:
    # The reference network is segmentation-models-pytorch's Unet("resnet50",
    # in_channels=4, classes=64): encoder 23,508,032 (torchvision, below) + 64*49 for the
    # 4th input channel = 23,511,168; decoder blocks of two bias-free conv3x3 + BN,
    # (2048+1024 -> 256), (256+512 -> 128), (128+256 -> 64), (64+64 -> 32), (32 -> 16):
    # 7,668,736 + 1,032,704 + 258,304 + 46,208 + 6,976; head conv3x3 16 -> 64: 9,280.
    assert _count(resnet50.encoder) == 23_511_168
    assert _count(resnet50) == 32_533_376


@pytest.mark.parametrize(
    ("block", "layers", "expected"),
    [
        # torchvision's documented totals (resnet18: 11,689,512; resnet34: 21,797,672;
        # resnet50: 25,557,032) minus the fc layer (512*1000+1000 or 2048*1000+1000).
        (BasicBlock, (2, 2, 2, 2), 11_689_512 - 513_000),
        (BasicBlock, (3, 4, 6, 3), 21_797_672 - 513_000),
        (Bottleneck, (3, 4, 6, 3), 25_557_032 - 2_049_000),
    ],
)
def test_encoder_matches_torchvision_parameter_count(block, layers, expected: int) -> None:
    # counted on the meta device: the shapes are all that matters, and drawing
    # 25 M random weights is slow
    with torch.device("meta"):
        encoder = ResNetEncoder(block, layers, in_channels=3)
    assert _count(encoder) == expected


def test_encoder_uses_torchvision_key_names(resnet50: torch.nn.Module) -> None:
    keys = resnet50.encoder.state_dict().keys()
    # torchvision's resnet50 state dict has 320 entries, 2 of which are fc.weight/fc.bias
    assert len(keys) == 318
    for key in [
        "conv1.weight", "bn1.running_var", "bn1.num_batches_tracked",
        "layer1.0.conv3.weight", "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_mean", "layer3.5.bn2.bias", "layer4.2.conv2.weight",
    ]:
        assert key in keys
    with torch.device("meta"):
        basic = ResNetEncoder(BasicBlock, (2, 2, 2, 2)).state_dict().keys()
    assert len(basic) == 122 - 2  # torchvision resnet18: 122 entries with fc
    assert "layer2.0.downsample.0.weight" in basic and "layer1.0.downsample.0.weight" not in basic


def test_identity_returns_its_input() -> None:
    phi = build_extractor("none", in_channels=5)
    features = torch.rand(2, 5, 7, 9)
    assert isinstance(phi, IdentityExtractor)
    assert phi(features) is features
    assert phi.out_channels == 5
    assert list(phi.parameters()) == []


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(InputValueError, match="resnet50, resnet34, resnet18, light, none"):
        build_extractor("vgg16")
    assert set(EXTRACTORS) == {"resnet50", "resnet34", "resnet18", "light", "none"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_channels": 0},
        {"out_channels": -1},
        {"in_channels": 2.5},
        {"in_channels": True},
    ],
)
def test_bad_channel_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(InputValueError):
        build_extractor("light", **kwargs)


@pytest.mark.parametrize("name", ["light", "none"])
def test_pretrained_refused_without_imagenet_encoder(name: str, tmp_path) -> None:
    with pytest.raises(InputValueError, match="resnet"):
        build_extractor(name, pretrained=tmp_path / "w.pth")


def test_errors_are_node_dada_errors() -> None:
    with pytest.raises(NodeDadaError):
        build_extractor("unknown")


def test_eval_output_is_per_sample_and_float64_works() -> None:
    phi = build_extractor("light").eval().double()
    batch = torch.rand(3, 4, 21, 26, dtype=torch.float64)
    with torch.no_grad():
        together = phi(batch)
        alone = phi(batch[1:2])
    assert together.dtype == torch.float64
    torch.testing.assert_close(together[1:2], alone)


def test_non_contiguous_input() -> None:
    phi = build_extractor("light").eval()
    batch = torch.rand(2, 40, 30, 4).permute(0, 3, 2, 1)  # (2, 4, 30, 40), non-contiguous
    with torch.no_grad():
        torch.testing.assert_close(phi(batch), phi(batch.contiguous()))


@pytest.mark.parametrize(("height", "width"), [(1, 1), (31, 64), (64, 65), (100, 7)])
def test_padding_is_cropped_back_exactly(height: int, width: int) -> None:
    image = torch.rand(2, 3, height, width)
    padded, (rows, cols) = _pad_to_multiple(image, 32)
    assert padded.shape[-2] % 32 == 0 and padded.shape[-1] % 32 == 0
    assert min(padded.shape[-2:]) >= 64  # BN needs > 1 value per channel at stride 32
    assert torch.equal(padded[..., rows, cols], image)


def test_decoder_channels_are_checked() -> None:
    encoder = ResNetEncoder(BasicBlock, (1, 1, 1, 1))
    with pytest.raises(InputValueError, match="5 values"):
        ResNetUNet(encoder, decoder_channels=(8, 8, 8))
    with pytest.raises(InputValueError, match="multiple of 4"):
        ResNetUNet(encoder, decoder_channels=(8, 8, 8, 6), pixel_shuffle=True)
