"""Loading trained models: named/path checkpoints, weights-only, untrusted files refused."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import node_dada
from node_dada.errors import DataError
from node_dada.models import DADAModule, export_model, load_model
from node_dada.models.inference import load_checkpoint_file


class _RunsCode:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_exported_model_loads_by_path_and_upsamples(tmp_path):
    torch.manual_seed(0)
    model = DADAModule(extractor="light", solver="ode", grad_mode="adjoint", method="rkc",
                       step_size=4.0, lead_in=50, train_iter=10, depth_scale=1000.0)
    path = tmp_path / "model.pt"
    export_model(model, path)
    loaded = load_model(path)
    assert loaded.hparams.method == "rkc" and not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    rng = np.random.default_rng(0)
    guide = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    source = rng.uniform(1000, 2000, size=(8, 8))
    out = node_dada.upsample(guide, source, scale=8, checkpoint=str(path))
    assert out.shape == (64, 64)
    np.testing.assert_allclose(out.reshape(8, 8, 8, 8).mean(axis=(1, 3)), source, rtol=1e-4)


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": _RunsCode(str(marker))}, path)
    with pytest.raises(DataError, match="beyond tensors"):
        load_model(path)
    with pytest.raises(DataError, match="beyond tensors"):
        node_dada.upsample(np.zeros((16, 16, 3), np.uint8), np.ones((2, 2)), scale=8,
                           checkpoint=str(path))
    assert not marker.exists()


def test_truncated_missing_and_wrong_content_files(tmp_path):
    model = DADAModule(extractor="light")
    path = tmp_path / "model.pt"
    export_model(model, path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_checkpoint_file(truncated)
    with pytest.raises(DataError, match="neither a shipped model name"):
        load_model(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(DataError, match="hyper_parameters"):
        load_model(plain)
