from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from node_dada.errors import DataError, InputValueError, ShapeError
from node_dada.models.extractors import BasicBlock, Bottleneck, ResNetEncoder, build_extractor
from node_dada.models.weights import (
    adapt_input_conv,
    load_checkpoint_safely,
    load_encoder_weights,
    load_state_dict_safely,
)


def _torchvision_state_dict(block, layers, fc_in: int) -> dict[str, torch.Tensor]:
    """What ``torch.save(torchvision.models.resnetXX().state_dict(), path)`` holds:
    the encoder's entries under the same names, a 3-channel conv1, and the fc layer."""
    encoder = ResNetEncoder(block, layers, in_channels=3)
    for module in encoder.modules():  # non-default statistics, to see them arrive
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.num_batches_tracked.fill_(7)
    state = encoder.state_dict()
    state["fc.weight"] = torch.randn(1000, fc_in)
    state["fc.bias"] = torch.randn(1000)
    return state


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("imagenet") / "resnet50-imagenet.pth"
    torch.save(_torchvision_state_dict(Bottleneck, (3, 4, 6, 3), 2048), path)
    return path


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("imagenet") / "resnet18-imagenet.pth"
    torch.save(_torchvision_state_dict(BasicBlock, (2, 2, 2, 2), 512), path)
    return path


class _Payload:
    """Unpickling this runs code: it writes ``marker`` (a stand-in for os.system)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


# ------------------------------------------------------------ ImageNet encoder weights
def test_torchvision_resnet50_file_loads_into_4_channel_model(resnet50_file: Path) -> None:
    state = torch.load(resnet50_file, weights_only=True)
    phi = build_extractor("resnet50", in_channels=4, pretrained=resnet50_file)
    own = phi.encoder.state_dict()
    rgb = state["conv1.weight"]
    assert own["conv1.weight"].shape == (64, 4, 7, 7)
    torch.testing.assert_close(own["conv1.weight"][:, :3], rgb)
    torch.testing.assert_close(own["conv1.weight"][:, 3], rgb.mean(dim=1))
    for key in ["layer1.0.conv1.weight", "layer3.5.bn2.running_var",
                "layer4.0.downsample.0.weight", "layer4.2.bn3.bias", "bn1.running_mean"]:
        torch.testing.assert_close(own[key], state[key])
    assert own["layer2.0.bn1.num_batches_tracked"].item() == 7
    assert phi(torch.rand(1, 4, 32, 32)).shape == (1, 64, 32, 32)


def test_report_lists_loaded_entries_and_ignores_fc(resnet18_file: Path) -> None:
    phi = build_extractor("resnet18", in_channels=3)
    report = load_encoder_weights(phi, resnet18_file)
    assert len(report.loaded) == len(phi.encoder.state_dict()) == 120
    assert report.missing == [] and report.unexpected == []
    torch.testing.assert_close(
        phi.encoder.conv1.weight, torch.load(resnet18_file, weights_only=True)["conv1.weight"]
    )


@pytest.mark.parametrize("in_channels", [1, 2, 6])
def test_first_conv_extension(in_channels: int, resnet18_file: Path) -> None:
    rgb = torch.load(resnet18_file, weights_only=True)["conv1.weight"]
    phi = build_extractor("resnet18", in_channels=in_channels, pretrained=resnet18_file)
    weight = phi.encoder.conv1.weight.detach()
    assert weight.shape == (64, in_channels, 7, 7)
    torch.testing.assert_close(weight, adapt_input_conv(rgb, in_channels))
    if in_channels >= 3:
        torch.testing.assert_close(weight[:, :3], rgb)
        for extra in range(3, in_channels):
            torch.testing.assert_close(weight[:, extra], rgb.mean(dim=1))
    else:  # a grayscale guide sees the RGB filters' response to a gray image
        torch.testing.assert_close(weight[:, 0], rgb.sum(dim=1))
        if in_channels == 2:
            torch.testing.assert_close(weight[:, 1], rgb.mean(dim=1))


def test_missing_and_unexpected_entries_are_reported(tmp_path: Path, resnet18_file) -> None:
    state = torch.load(resnet18_file, weights_only=True)
    dropped = [key for key in state if key.startswith("layer4.1.")]
    for key in dropped:
        del state[key]
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    phi = build_extractor("resnet18")
    with pytest.warns(UserWarning, match=r"missing.*layer4\.1\..*extra\.weight"):
        report = load_encoder_weights(phi, path)
    assert sorted(report.missing) == sorted(k for k in dropped if "num_batches" not in k)
    assert report.unexpected == ["extra.weight"]


def test_dataparallel_prefix_is_stripped(tmp_path: Path, resnet18_file: Path) -> None:
    state = torch.load(resnet18_file, weights_only=True)
    path = tmp_path / "dp.pth"
    torch.save({f"module.{key}": value for key, value in state.items()}, path)
    report = load_encoder_weights(build_extractor("resnet18"), path)
    assert report.missing == [] and report.unexpected == []


def test_wrong_architecture_raises_shape_error(resnet50_file: Path) -> None:
    with pytest.raises(ShapeError, match=r"layer1\.0\.conv1\.weight: file \(64, 64, 1, 1\)"):
        build_extractor("resnet18", pretrained=resnet50_file)


def test_first_conv_of_other_size_raises_shape_error(resnet18_file: Path) -> None:
    with pytest.raises(ShapeError, match=r"conv1\.weight has shape \(64, 3, 7, 7\)"):
        load_encoder_weights(build_extractor("light"), resnet18_file)


def test_file_of_another_model_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"backbone.weight": torch.zeros(2), "fc.weight": torch.zeros(2)}, path)
    with pytest.raises(DataError, match="torchvision ResNet"):
        load_encoder_weights(build_extractor("resnet18"), path)


def test_model_without_resnet_encoder_is_refused(resnet18_file: Path) -> None:
    with pytest.raises(InputValueError, match="resnet"):
        load_encoder_weights(build_extractor("none"), resnet18_file)


# ------------------------------------------------------------------ safe loading
def test_bare_state_dict_round_trip(tmp_path: Path) -> None:
    state = torch.nn.Linear(3, 2).state_dict()
    torch.save(state, tmp_path / "w.pt")
    loaded = load_state_dict_safely(tmp_path / "w.pt")
    assert loaded.keys() == state.keys()
    for key in state:
        torch.testing.assert_close(loaded[key], state[key])


def test_lightning_checkpoint_gives_its_state_dict(tmp_path: Path) -> None:
    state = {"extractor.head.weight": torch.randn(4, 2), "log_kappa": torch.tensor(-3.5)}
    checkpoint = {
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.5.0",
        "state_dict": state, "hyper_parameters": {"extractor": "light", "lr": 1e-4},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}],
        "loops": {}, "callbacks": {}, "lr_schedulers": [],
    }
    torch.save(checkpoint, tmp_path / "last.ckpt")
    loaded = load_state_dict_safely(tmp_path / "last.ckpt")
    assert loaded.keys() == state.keys()
    assert load_checkpoint_safely(tmp_path / "last.ckpt")["global_step"] == 120


@pytest.mark.parametrize("writer", ["torch.save", "torch.save legacy", "pickle.dump"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.ckpt"
    content = {"state_dict": {"weight": torch.zeros(2), "trap": _Payload(marker)}}
    if writer == "pickle.dump":
        with path.open("wb") as file:
            pickle.dump(content, file)
    else:
        torch.save(content, path, _use_new_zipfile_serialization=writer == "torch.save")
    with pytest.raises(DataError, match="code") as caught:
        load_state_dict_safely(path)
    assert "will not be loaded" in str(caught.value)
    assert not marker.exists()
    with pytest.raises(DataError):
        build_extractor("resnet18", pretrained=path)
    assert not marker.exists()


def test_the_payload_is_live(tmp_path: Path) -> None:
    # Control for the test above: plain unpickling does run the payload.
    marker = tmp_path / "pwned.txt"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("zip_format", [True, False])
@pytest.mark.parametrize("keep", [0.0, 1e-4, 0.01, 0.1, 0.5, 0.99])
def test_truncated_file_raises_data_error(tmp_path: Path, keep: float, zip_format: bool) -> None:
    path = tmp_path / "w.pt"
    torch.save({"weight": torch.randn(100, 100)}, path, _use_new_zipfile_serialization=zip_format)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match=str(path)):
        load_state_dict_safely(path)


def test_xz_compressed_file_loads_like_the_plain_one(tmp_path: Path) -> None:
    import lzma

    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.randn(50, 50).half()}, plain)
    packed = tmp_path / "packed.pt"
    packed.write_bytes(lzma.compress(plain.read_bytes()))
    assert packed.stat().st_size < plain.stat().st_size
    assert torch.equal(load_state_dict_safely(packed)["weight"],
                       load_state_dict_safely(plain)["weight"])


@pytest.mark.parametrize("keep", [0.01, 0.5, 0.99])
def test_truncated_xz_file_raises_data_error(tmp_path: Path, keep: float) -> None:
    import lzma

    path = tmp_path / "w.pt"
    torch.save({"weight": torch.randn(100, 100)}, path)
    data = lzma.compress(path.read_bytes())
    path.write_bytes(data[: max(7, int(len(data) * keep))])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_state_dict_safely(path)


@pytest.mark.parametrize("compress", [False, True])
def test_exported_model_loads_back_identically(tmp_path: Path, compress: bool) -> None:
    from node_dada.models import DADAModule, export_model, load_model

    model = DADAModule(extractor="light", lead_in=20, train_iter=4)
    path = tmp_path / "model.pt"
    export_model(model, path, half=True, compress=compress)
    assert (path.read_bytes()[:6] == b"\xfd7zXZ\x00") == compress
    loaded = load_model(path)
    for key, value in model.state_dict().items():
        expected = value.half().to(value.dtype) if value.is_floating_point() else value
        assert torch.equal(loaded.state_dict()[key], expected), key


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "resnet50.pth"
    with pytest.raises(DataError, match="does not exist") as caught:
        load_state_dict_safely(path)
    assert isinstance(caught.value, OSError)
    with pytest.raises(DataError, match="does not exist"):
        build_extractor("resnet18", pretrained=path)


def test_directory_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a file"):
        load_state_dict_safely(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (torch.zeros(3), "holds a Tensor"),
        ([torch.zeros(3)], "holds a list"),
        ({"weight": torch.zeros(3), "step": 4}, "not .*first: \\['step'\\]"),
        ({"state_dict": [1, 2]}, "'state_dict' entry is a list"),
    ],
)
def test_wrong_content_raises_data_error(tmp_path: Path, content, message: str) -> None:
    torch.save(content, tmp_path / "w.pt")
    with pytest.raises(DataError, match=message):
        load_state_dict_safely(tmp_path / "w.pt")
