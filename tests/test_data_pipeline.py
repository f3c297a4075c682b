"""The shared sample pipeline: Sample/Batch records, augmentation, crops, the dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from node_dada.data import Batch, GuidedDepthDataset, MotorcycleScenes, Sample, Scene
from node_dada.data.pipeline import (
    collate_samples,
    crop_to_multiple,
    grid_crops,
    make_sample,
    random_flip,
    random_rotate,
    scene_subset,
    valid_fractions,
)
from node_dada.diffusion import initial_estimate, normalize_guide
from node_dada.errors import InputValueError, ShapeError


class ListScenes:
    """A SceneSource over scenes held in memory; counts loads."""

    unit = "mm"

    def __init__(self, scenes, depth_scale=1000.0):
        self.scenes = scenes
        self.depth_scale = depth_scale
        self.loads = 0

    def __len__(self):
        return len(self.scenes)

    def scene_name(self, index):
        return self.scenes[index].name

    def shape(self, index):
        return self.scenes[index].guide.shape[:2]

    def load(self, index):
        self.loads += 1
        return self.scenes[index]


def _scene(name="s", height=32, width=40, holes=0.0, seed=0):
    rng = np.random.default_rng(seed)
    guide = rng.random((height, width, 3)).astype(np.float32)
    depth = rng.uniform(800.0, 3000.0, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) < holes] = np.nan
    return Scene(name, guide, depth=depth)


def test_make_sample_values():
    scene = _scene(holes=0.05)
    sample = make_sample(scene.guide, scene.depth, scale=4, depth_scale=1000.0, name="x")
    assert isinstance(sample, Sample)
    assert sample.guide.shape == (3, 32, 40) and sample.guide.dtype == torch.float32
    assert sample.source.shape == (1, 8, 10) and sample.mask_lr.dtype == torch.bool
    assert sample.depth0.shape == sample.target.shape == sample.mask_hr.shape == (1, 32, 40)
    expected_guide = normalize_guide(torch.from_numpy(scene.guide.transpose(2, 0, 1))[None])[0]
    torch.testing.assert_close(sample.guide, expected_guide)
    valid = np.isfinite(scene.depth)
    np.testing.assert_array_equal(sample.mask_hr[0].numpy(), valid)
    np.testing.assert_allclose(sample.target[0].numpy()[valid], scene.depth[valid] / 1000.0,
                               rtol=1e-6)
    assert (sample.target[0].numpy()[~valid] == 0).all()
    # source = mean of the valid pixels of each 4 x 4 block (block (1, 2) by hand)
    block = scene.depth[4:8, 8:12]
    assert float(sample.source[0, 1, 2]) == pytest.approx(
        np.nanmean(block) / 1000.0, rel=1e-5
    )
    torch.testing.assert_close(
        sample.depth0[None], initial_estimate(sample.source[None], sample.mask_lr[None], 4)
    )


def test_make_sample_all_invalid_and_bad_size():
    scene = _scene(holes=1.0)
    sample = make_sample(scene.guide, scene.depth, scale=4, depth_scale=1.0, name="x")
    assert not sample.mask_lr.any() and (sample.depth0 == 0).all()
    with pytest.raises(ShapeError, match="divisible"):
        make_sample(scene.guide[:30], scene.depth[:30], scale=4, depth_scale=1.0, name="x")


def test_collate_and_batch_transfer():
    samples = [
        make_sample(s.guide, s.depth, scale=4, depth_scale=1000.0, name=s.name)
        for s in (_scene("a", seed=1), _scene("b", seed=2))
    ]
    batch = collate_samples(samples)
    assert isinstance(batch, Batch) and len(batch) == 2 and batch.name == ("a", "b")
    assert batch.guide.shape == (2, 3, 32, 40) and batch.mask_hr.dtype == torch.bool
    assert batch.scale == 4 and batch.depth_scale == 1000.0 and batch.unit == "mm"
    torch.testing.assert_close(batch.physical(batch.target)[1], samples[1].target * 1000.0)
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.name == batch.name
    from lightning.fabric.utilities.apply_func import move_data_to_device
    from lightning.pytorch.utilities.data import extract_batch_size

    assert isinstance(move_data_to_device(batch, torch.device("cpu")), Batch)
    with pytest.warns(UserWarning, match="ambiguous"):
        assert extract_batch_size(batch) == 2
    other = make_sample(samples[0].guide.numpy().transpose(1, 2, 0)[:16, :16] * 0 + 0.5,
                        np.ones((16, 16), np.float32), scale=4, depth_scale=1000.0, name="c")
    with pytest.raises(ShapeError, match="one size per batch"):
        collate_samples([samples[0], other])
    with pytest.raises(InputValueError, match="scale"):
        collate_samples([samples[0], make_sample(
            np.full((32, 40, 3), 0.5, np.float32), np.ones((32, 40), np.float32),
            scale=8, depth_scale=1000.0, name="d")])


def test_flip_and_rotation():
    rng = np.random.default_rng(0)
    guide = np.random.default_rng(1).random((20, 30, 3)).astype(np.float32)
    depth = np.arange(600, dtype=np.float32).reshape(20, 30) + 100
    flipped = [random_flip(guide, depth, np.random.default_rng(s)) for s in range(20)]
    assert any(f[1][0, 0] == depth[0, -1] for f in flipped)
    assert any(f[1][0, 0] == depth[0, 0] for f in flipped)
    guide_r, depth_r = random_rotate(guide, depth, rng, max_angle=15.0)
    assert guide_r.shape == guide.shape and depth_r.shape == depth.shape
    assert np.isnan(depth_r[0, 0]) or np.isnan(depth_r[0, -1])  # corners leave the image
    assert np.isfinite(depth_r[8:12, 13:17]).all()
    assert np.nanmin(depth_r) >= depth.min() - 1e-3 and np.nanmax(depth_r) <= depth.max() + 1e-3
    # a hole stays a hole and is never blended into its neighbours' values
    holed = depth.copy()
    holed[10, 15] = np.nan
    _, rotated = random_rotate(guide, holed, np.random.default_rng(3), max_angle=15.0)
    assert np.isnan(rotated[9:12, 14:17]).any()
    grey, _ = random_rotate(guide[..., :1], depth, rng, max_angle=5.0)
    assert grey.shape == (20, 30, 1)
    same = random_rotate(guide, depth, rng, max_angle=0.0)
    assert same[1] is depth


def test_valid_fractions_and_grids():
    depth = np.ones((8, 8), np.float32)
    depth[:4, :4] = np.nan  # one of four 4x4 blocks empty
    depth[4, 4] = np.nan
    lr, hr = valid_fractions(depth, 4)
    assert lr == 0.75 and hr == pytest.approx(47 / 64)
    assert grid_crops((40, 54), 16) == [(0, 0), (0, 16), (0, 32), (16, 0), (16, 16), (16, 32)]
    assert grid_crops((10, 54), 16) == []
    assert crop_to_multiple((370, 463), 8) == (368, 456)


def test_train_crops_meet_validity_and_retry_limit():
    torch.manual_seed(0)
    holes = _scene("holes", height=64, width=64, seed=4)
    holes.depth[:20, :20] = np.nan  # an occlusion-like hole: some crops are rejected
    dataset = GuidedDepthDataset(ListScenes([holes]), mode="train", scale=4, crop_size=32,
                                 repeats=3)
    assert len(dataset) == 3
    for sample in dataset:
        assert sample.mask_lr.float().mean() >= 0.9 and sample.mask_hr.float().mean() >= 0.8
        assert sample.guide.shape == (3, 32, 32)
    hopeless = _scene("hopeless", height=64, width=64, holes=0.5, seed=5)
    dataset = GuidedDepthDataset(ListScenes([hopeless]), mode="train", scale=4, crop_size=32,
                                 max_retries=5)
    with pytest.raises(InputValueError, match="hopeless.*5 draws"):
        dataset[0]


def test_train_randomness_follows_torch_seed():
    scene = _scene("r", height=64, width=64, seed=6)
    dataset = GuidedDepthDataset(ListScenes([scene]), mode="train", scale=4, crop_size=32)
    torch.manual_seed(1)
    first = dataset[0].target
    torch.manual_seed(1)
    torch.testing.assert_close(dataset[0].target, first)


def test_eval_is_deterministic_and_cache_loads_once():
    source = ListScenes([_scene("a", seed=7), _scene("b", height=48, seed=8)])
    dataset = GuidedDepthDataset(source, mode="eval", scale=4, crop_size=16)
    # 32x40 -> 2x2 crops; 48x40 -> 3x2 crops
    assert len(dataset) == 4 + 6
    assert dataset[5].name == "b@0,16"
    torch.testing.assert_close(dataset[5].target, dataset[5].target)
    dataset[0]
    assert source.loads == 2
    uncached = ListScenes([_scene("a", seed=7)])
    dataset = GuidedDepthDataset(uncached, mode="eval", scale=4, crop_size=16, cache=False)
    dataset[0], dataset[1]
    assert uncached.loads == 2


def test_predict_whole_image_and_guide_channels():
    source = ListScenes([_scene("a", height=34, width=43)])
    sample = GuidedDepthDataset(source, mode="predict", scale=4)[0]
    assert sample.guide.shape == (3, 32, 40) and sample.source.shape == (1, 8, 10)
    grey = GuidedDepthDataset(source, mode="eval", scale=4, crop_size=None, guide_channels=1)[0]
    assert grey.guide.shape == (1, 32, 40)


def test_dataset_argument_checks():
    source = ListScenes([_scene()])
    with pytest.raises(InputValueError, match="multiple of scale"):
        GuidedDepthDataset(source, mode="eval", scale=8, crop_size=20)
    with pytest.raises(InputValueError, match="mode"):
        GuidedDepthDataset(source, mode="test", scale=4)
    with pytest.raises(ShapeError, match="exceeds"):
        GuidedDepthDataset(source, mode="train", scale=4, crop_size=64)
    with pytest.raises(ShapeError, match="exceeds every scene"):
        GuidedDepthDataset(source, mode="eval", scale=4, crop_size=64)
    with pytest.raises(InputValueError, match="training needs"):
        GuidedDepthDataset(source, mode="train", scale=4, crop_size=None)


def test_dataloader_with_a_worker():
    from torch.utils.data import DataLoader

    dataset = GuidedDepthDataset(ListScenes([_scene(seed=9)]), mode="eval", scale=4,
                                 crop_size=16)
    loader = DataLoader(dataset, batch_size=4, num_workers=1, collate_fn=collate_samples)
    batches = list(loader)
    assert len(batches) == 1 and isinstance(batches[0], Batch) and len(batches[0]) == 4


def test_motorcycle_builtin():
    scenes = MotorcycleScenes()
    scene = scenes.load(0)
    assert scene.guide.shape == (500, 741, 3) and scenes.shape(0) == (500, 741)
    sample = GuidedDepthDataset(scenes, mode="eval", scale=8, crop_size=256)[0]
    assert sample.unit == "mm" and sample.depth_scale == 1122.7
    depth_mm = sample.target[sample.mask_hr] * sample.depth_scale
    assert 500 < float(depth_mm.min()) and float(depth_mm.max()) < 10000


def test_motorcycle_datamodule():
    from node_dada.data import MotorcycleDataModule

    data = MotorcycleDataModule(scale=8, crop_size=128, batch_size=1)
    data.setup("fit")
    assert next(iter(data.train_dataloader())).guide.shape == (1, 3, 128, 128)
    assert len(data.datasets["val:eval"]) == (500 // 128) * (741 // 128)


def test_evaluation_crops_can_differ_from_the_training_crops():
    """``eval_crop_size`` keeps validation on one footing across runs that train on
    other crop sizes: whole images (None), another grid, or the training crops."""
    from node_dada.data import MotorcycleDataModule

    whole = MotorcycleDataModule(scale=8, crop_size=128, eval_crop_size=None)
    whole.setup("fit")
    assert next(iter(whole.train_dataloader())).guide.shape[-2:] == (128, 128)
    assert len(whole.datasets["val:eval"]) == 1
    assert whole.datasets["val:eval"][0].guide.shape[-2:] == (496, 736)
    grid = MotorcycleDataModule(scale=8, crop_size=128, eval_crop_size=256)
    grid.setup("validate")
    assert len(grid.datasets["val:eval"]) == (500 // 256) * (741 // 256)
    same = MotorcycleDataModule(scale=8, crop_size=128)
    same.setup("validate")
    assert len(same.datasets["val:eval"]) == (500 // 128) * (741 // 128)
    with pytest.raises(InputValueError, match="eval_crop_size: expected 'same'"):
        MotorcycleDataModule(scale=8, crop_size=128, eval_crop_size="whole")
    with pytest.raises(InputValueError, match="multiple of scale 8"):
        MotorcycleDataModule(scale=8, crop_size=128, eval_crop_size=100).setup("validate")


def test_scene_subset_keeps_views_together_and_is_nested():
    names = ["Art/view1", "Art/view5", "Books/view1", "Books/view5", "Midd/view0",
             "frame_0007", "Cloth/view1", "Cloth/view5"]
    groups = {"Art": names[0:2], "Books": names[2:4], "Midd": names[4:5],
              "frame_0007": names[5:6], "Cloth": names[6:8]}
    source = ListScenes([_scene(name, seed=i) for i, name in enumerate(names)])

    def chosen(count, seed=3):
        subset = scene_subset(source, count, seed=seed)
        assert subset.depth_scale == source.depth_scale and subset.unit == source.unit
        assert subset.shape(0) == source.shape(names.index(subset.scene_name(0)))
        assert subset.load(0).name == subset.scene_name(0)
        return [subset.scene_name(i) for i in range(len(subset))]

    for count in range(1, 6):
        kept = chosen(count)
        whole = [group for group in groups.values() if set(group) <= set(kept)]
        assert len(whole) == count and sum(map(len, whole)) == len(kept)
        assert kept == sorted(kept, key=names.index)  # in the source's order
    for count in range(1, 5):
        assert set(chosen(count)) < set(chosen(count + 1))
    assert chosen(5) == names
    assert len({tuple(chosen(2, seed)) for seed in range(6)}) > 1  # the seed draws
    with pytest.raises(InputValueError, match=r"train_scenes: expected 1 to 5 .* got 6"):
        scene_subset(source, 6)
    with pytest.raises(InputValueError, match="got 0"):
        scene_subset(source, 0)


def test_datamodule_trains_on_a_scene_subset_and_evaluates_on_the_whole_splits():
    from node_dada.data import MotorcycleDataModule

    data = MotorcycleDataModule(scale=8, crop_size=128, train_scenes=1, train_repeats=3)
    data.setup("fit")
    assert len(data.datasets["train:train"]) == 3
    assert len(data.datasets["val:eval"]) == (500 // 128) * (741 // 128)
    with pytest.raises(InputValueError, match="train_scenes: expected 1 to 1"):
        MotorcycleDataModule(scale=8, crop_size=128, train_scenes=2).setup("fit")
