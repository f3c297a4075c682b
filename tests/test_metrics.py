"""Depth errors in cm: exact per-pixel aggregation and the reference per-batch mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from node_dada.errors import InputValueError, ShapeError
from node_dada.metrics import DepthErrorAccumulator, DepthErrors, aggregate_errors, depth_errors


def test_depth_errors_hand_computed():
    target = np.array([1000.0, 2000.0, np.nan, 4000.0])
    prediction = np.array([1010.0, 1970.0, 5.0, 4000.0])
    errors = depth_errors(prediction, target)
    # differences 1, -3, 0 cm over 3 valid pixels
    assert errors.count == 3
    assert errors.mae_cm == pytest.approx(4 / 3)
    assert errors.mse_cm2 == pytest.approx(10 / 3)
    assert errors.rmse_cm == pytest.approx(math.sqrt(10 / 3))
    masked = depth_errors(torch.tensor(prediction), torch.tensor(target),
                          torch.tensor([True, False, True, True]))
    assert masked.count == 2 and masked.mae_cm == pytest.approx(0.5)
    with pytest.raises(ShapeError):
        depth_errors(prediction[:2], target)
    with pytest.raises(InputValueError, match="valid pixel"):
        depth_errors(prediction, np.full(4, np.nan))


def _batches():
    rng = np.random.default_rng(0)
    out = []
    for size in (10, 1000, 37):
        target = rng.uniform(500, 5000, size)
        out.append((target + rng.normal(0, 30 if size == 10 else 5, size), target))
    return out


def test_pixel_aggregation_equals_concatenation():
    batches = _batches()
    accumulator = DepthErrorAccumulator()
    for prediction, target in batches:
        accumulator.update(prediction, target)
    exact = depth_errors(np.concatenate([p for p, _ in batches]),
                         np.concatenate([t for _, t in batches]))
    pooled = accumulator.compute()
    assert pooled.count == exact.count == 1047
    assert pooled.mae_cm == pytest.approx(exact.mae_cm, rel=1e-12)
    assert pooled.mse_cm2 == pytest.approx(exact.mse_cm2, rel=1e-12)
    assert pooled.rmse_cm == pytest.approx(exact.rmse_cm, rel=1e-12)


def test_batch_aggregation_is_the_mean_of_batch_means():
    batches = _batches()
    per_batch = [depth_errors(p, t) for p, t in batches]
    reference = aggregate_errors(per_batch, aggregation="batch")
    assert reference.mae_cm == pytest.approx(np.mean([e.mae_cm for e in per_batch]))
    assert reference.mse_cm2 == pytest.approx(np.mean([e.mse_cm2 for e in per_batch]))
    assert reference.rmse_cm == pytest.approx(math.sqrt(reference.mse_cm2))
    # the small, noisy batch weighs as much as the large one: larger than the exact value
    assert reference.mae_cm > aggregate_errors(per_batch).mae_cm


def test_hand_computed_two_batches():
    first = DepthErrors(mae_cm=1.0, mse_cm2=2.0, rmse_cm=math.sqrt(2.0), count=1)
    second = DepthErrors(mae_cm=4.0, mse_cm2=20.0, rmse_cm=math.sqrt(20.0), count=3)
    pixel = aggregate_errors([first, second])
    assert (pixel.mae_cm, pixel.mse_cm2, pixel.count) == pytest.approx((3.25, 15.5, 4))
    batch = aggregate_errors([first, second], aggregation="batch")
    assert (batch.mae_cm, batch.mse_cm2) == pytest.approx((2.5, 11.0))
    assert batch.rmse_cm == pytest.approx(math.sqrt(11.0))


def test_accumulator_skips_empty_batches_and_resets():
    accumulator = DepthErrorAccumulator()
    assert accumulator.update(np.ones(3), np.full(3, np.nan)) is None
    assert accumulator.update(np.ones(3), np.ones(3), np.zeros(3, bool)) is None
    with pytest.raises(InputValueError, match="no batch"):
        accumulator.compute()
    errors = accumulator.update(np.array([10.0]), np.array([20.0]))
    assert errors.mae_cm == pytest.approx(1.0) and len(accumulator) == 1
    accumulator.reset()
    assert len(accumulator) == 0
    with pytest.raises(InputValueError, match="aggregation"):
        aggregate_errors([errors], aggregation="mean")
    with pytest.raises(InputValueError, match="at least one"):
        aggregate_errors([])


def test_accumulator_on_batches_of_samples():
    from node_dada.data.pipeline import collate_samples, make_sample

    rng = np.random.default_rng(1)
    depth = rng.uniform(800, 3000, (16, 16)).astype(np.float32)
    depth[:2] = np.nan
    sample = make_sample(rng.random((16, 16, 3)).astype(np.float32), depth, scale=4,
                         depth_scale=1122.7, name="x")
    batch = collate_samples([sample, sample])
    accumulator = DepthErrorAccumulator()
    errors = accumulator.update(batch.physical(batch.depth0), batch.physical(batch.target),
                                batch.mask_hr)
    assert errors.count == 2 * 14 * 16


def test_the_accumulator_and_the_training_metrics_share_one_sum():
    """The benchmarks' accumulator and DADAModule's val/test metrics are one
    implementation (ErrorSums): same batches, same numbers, both aggregations."""
    from node_dada.metrics import ErrorSums

    batches = _batches()
    accumulator = DepthErrorAccumulator()
    sums = ErrorSums()
    for prediction, target in batches:
        accumulator.update(prediction, target)
        p, t = torch.as_tensor(prediction), torch.as_tensor(target)
        sums.add(p, t, torch.isfinite(t), factor=0.1)
    per_batch = [depth_errors(p, t) for p, t in batches]
    for aggregation in ("pixel", "batch"):
        assert accumulator.compute(aggregation=aggregation) == sums.errors(aggregation)
        reference = aggregate_errors(per_batch, aggregation=aggregation)
        assert sums.errors(aggregation).mae_cm == pytest.approx(reference.mae_cm, rel=1e-12)
    assert len(accumulator) == sums.batches == len(batches)
