"""SynthesisDataset over real (small) Zarr stores, with DataLoader workers under fork and spawn."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from geosynth.catalog import load_catalog
from geosynth.errors import DataError, UsageError
from geosynth.ml.data.datasets import SynthesisDataset
from geosynth.ml.data.tensors import generator_inputs
from geosynth.store import (
    StoreLayout,
    TileData,
    TilePlan,
    create_store,
    modality,
    open_store,
)

SIZE = 48  # tile edge in pixels
CROP = 32
LAYOUT = StoreLayout(chunk=20)  # partial chunks at the tile edge


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tile(rng, sar: bool) -> TileData:
    seg = rng.integers(0, 11, (SIZE, SIZE), dtype=np.uint8)
    dem = (100 + 20 * rng.random((1, SIZE, SIZE))).astype("float32")
    rgb = rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8)
    data = TileData(rgb=rgb, dem=dem, seg=seg)
    if sar:
        data.sar = rng.random((1, SIZE, SIZE)).astype("float32")
        valid = np.ones((SIZE, SIZE), dtype=bool)
        valid[:, :5] = False
        data.sar_valid = valid
    return data


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """Six tiles: 4 train (2 with SAR), 1 test, 1 train tile never written (planned)."""
    path = tmp_path_factory.mktemp("ml") / "nrw.zarr"
    plans = [TilePlan(f"{356 + i}_5645", "demo", "test" if i == 4 else "train") for i in range(6)]
    store = create_store(
        path, plans, tile_shape=(SIZE, SIZE),
        modalities=[modality("rgb"), modality("dem"), modality("seg"), modality("sar", 1)],
        dataset="test", crs="EPSG:25832", classes=load_catalog().classes, layout=LAYOUT,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for i, plan in enumerate(plans[:5]):
        store.write_tile(plan.tile_id, _tile(rng, sar=i in (1, 3)))
    return path


def _stored(path, tile_id, name):
    store = open_store(path)
    return store.read(name, store.index(tile_id))


def test_sample_values_match_the_store_in_the_shared_window(store_path):
    ds = SynthesisDataset(store_path, "train", crop=CROP, seed=3)
    assert len(ds) == 4  # the planned tile is left out
    assert ds.channels == {"seg": 11, "dem": 1, "rgb": 3}
    flips = set()
    for item in range(len(ds)):
        s = ds[item]
        row, col, h, w = s["window"].tolist()
        flip = ds.window(item)[4]
        flips.add(flip)
        cut = (slice(row, row + h), slice(col, col + w))

        def same(x, stored, flip=flip):
            expected = np.ascontiguousarray(stored[..., ::-1] if flip else stored)
            np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-6)
            return True

        assert s["seg"].shape == (11, CROP, CROP) and s["seg"].dtype == torch.float32
        assert torch.all(s["seg"].sum(0) == 1)
        seg = _stored(store_path, s["tile"], "seg")[cut]
        assert same(s["seg"].argmax(0), seg.astype(np.int64))
        rgb = _stored(store_path, s["tile"], "rgb")[(slice(None), *cut)]
        assert same(s["rgb"], rgb.astype(np.float32) / 127.5 - 1)
        assert s["rgb"].min() >= -1 and s["rgb"].max() <= 1
        dem = _stored(store_path, s["tile"], "dem")[(slice(None), *cut)]
        assert same(s["dem"], dem)  # metres as stored
    assert flips == {True, False}  # seed 3 flips some of the four samples, not all


def test_batches_feed_a_generator_built_from_the_dataset_channels(store_path):
    from geosynth.ml import build_generator, generator_config_for

    ds = SynthesisDataset(store_path, "train", inputs=("seg", "dem", "sar"), output="rgb", crop=32)
    assert ds.generator_channels == (11, 2, 3)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    labels, raster = generator_inputs(batch, ds.inputs)
    assert labels.shape == (2, 11, 32, 32) and raster.shape == (2, 2, 32, 32)
    assert torch.equal(raster[:, 1:], batch["sar"]) and torch.equal(raster[:, :1], batch["dem"])
    g = build_generator(generator_config_for("ours", *ds.generator_channels, capacity=2,
                                             spade_hidden=4, n_sampling=2, n_blocks=1))  # fmt: skip
    with torch.no_grad():
        assert g(labels, raster).shape == batch["rgb"].shape


def test_tiles_without_the_output_are_left_out_and_sar_is_scaled(store_path):
    ds = SynthesisDataset(store_path, "train", output="sar", crop=None, flip=False)
    assert ds.tile_ids == ["357_5645", "359_5645"]
    s = ds[0]
    sar = _stored(store_path, "357_5645", "sar")
    assert s["sar"].shape == (1, SIZE, SIZE)
    assert torch.equal(s["sar_valid"][0, :, :5], torch.zeros(SIZE, 5, dtype=torch.bool))
    assert torch.all(s["sar"][0, :, :5] == -1)
    np.testing.assert_allclose(s["sar"][0, :, 5:].numpy(), sar[0, :, 5:] * 2 - 1, atol=1e-6)


def test_any_store_of_the_contract_dfc_like_dual_pol_sar(tmp_path):
    """A DFC2020-like store: 8 classes (ids 1..8), dual-pol SAR, no DEM."""
    classes = [{"id": i, "key": f"c{i}", "name": f"class {i}", "color": "#000000"}
               for i in range(1, 9)]  # fmt: skip
    path = tmp_path / "dfc.zarr"
    store = create_store(path, [TilePlan("ROIs0000_1", "spring", "test")], tile_shape=(16, 16),
                         modalities=[modality("seg"), modality("sar", 2)], dataset="dfc2020",
                         crs=None, classes=classes)  # fmt: skip
    rng = np.random.default_rng(4)
    sar = rng.random((2, 16, 16)).astype("float32")
    store.write_tile("ROIs0000_1", TileData(seg=rng.integers(1, 9, (16, 16), dtype=np.uint8),
                                            sar=sar))  # fmt: skip
    s = SynthesisDataset(path, "test", inputs=("seg",), output="sar", crop=None, train=False)[0]
    assert s["seg"].shape == (9, 16, 16) and s["sar"].shape == (2, 16, 16)
    assert torch.all(s["seg"][0] == 0)  # no unlabelled pixels
    np.testing.assert_allclose(s["sar"].numpy(), sar * 2 - 1, atol=1e-6)
    assert bool(s["sar_valid"].all())


def test_epochs_and_seeds_change_windows_reproducibly(store_path):
    a = SynthesisDataset(store_path, "train", crop=8, seed=1)
    b = SynthesisDataset(store_path, "train", crop=8, seed=1)
    windows = [a.window(i) for i in range(len(a))]
    assert windows == [b.window(i) for i in range(len(b))]
    assert torch.equal(a[2]["rgb"], b[2]["rgb"])
    a.set_epoch(1)
    assert a.epoch == 1
    assert [a.window(i) for i in range(len(a))] != windows
    c = SynthesisDataset(store_path, "train", crop=8, seed=2)
    assert [c.window(i) for i in range(len(c))] != windows


def test_samples_per_epoch_takes_several_crops_per_tile(store_path):
    one = SynthesisDataset(store_path, "train", crop=8, seed=1)
    many = SynthesisDataset(store_path, "train", crop=8, seed=1, samples_per_epoch=3 * len(one))
    assert len(many) == 3 * len(one)
    n = len(one)
    # sample n + k reads tile k again, through another window
    assert many[n + 1]["tile"] == many[1]["tile"] == one[1]["tile"]
    assert many.window(n + 1) != many.window(1)
    assert torch.equal(many[1]["rgb"], one[1]["rgb"])
    with pytest.raises(IndexError):
        many[3 * n]
    with pytest.raises(UsageError, match="samples_per_epoch"):
        SynthesisDataset(store_path, "train", crop=8, samples_per_epoch=0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 500),
    item=st.integers(0, 3),
    crop=st.integers(1, SIZE),
)
def test_random_window_lies_inside_the_tile(store_path, seed, epoch, item, crop):
    ds = SynthesisDataset(store_path, "train", crop=crop, seed=seed)
    ds.set_epoch(epoch)
    row, col, h, w, _ = ds.window(item)
    assert (h, w) == (crop, crop)
    assert 0 <= row <= SIZE - crop and 0 <= col <= SIZE - crop


def test_evaluation_mode_is_deterministic_centre_crop_or_full_tile(store_path):
    ds = SynthesisDataset(store_path, "test", crop=CROP, train=False, seed=5)
    assert ds.window(0) == ((SIZE - CROP) // 2, (SIZE - CROP) // 2, CROP, CROP, False)
    ds.set_epoch(7)
    assert ds.window(0)[:2] == ((SIZE - CROP) // 2,) * 2
    full = SynthesisDataset(store_path, "test", crop=None, train=False)
    s = full[0]
    assert s["rgb"].shape == (3, SIZE, SIZE) and s["tile"] == "360_5645"
    assert s["window"].tolist() == [0, 0, SIZE, SIZE]


def test_resize_is_nearest_for_labels_and_bilinear_for_images(store_path):
    ds = SynthesisDataset(store_path, "train", crop=CROP, resize=16, train=False)
    s = ds[0]
    assert s["seg"].shape == (11, 16, 16) and s["rgb"].shape == (3, 16, 16)
    assert set(torch.unique(s["seg"]).tolist()) <= {0.0, 1.0}
    assert torch.all(s["seg"].sum(0) == 1)
    full = SynthesisDataset(store_path, "train", crop=CROP, train=False)[0]
    # bilinear (antialiased) downsampling averages: values between the crop's extremes, smoother
    assert s["rgb"].std() < full["rgb"].std()
    ids = SynthesisDataset(store_path, "train", crop=CROP, resize=64, train=False, one_hot=False)
    labels = ids[0]["seg"]
    assert labels.dtype == torch.int64 and labels.shape == (64, 64)
    assert torch.equal(labels[::2, ::2], full["seg"].argmax(0))  # nearest: 2x upsample repeats


def test_dem_standardisation_per_crop_and_per_tile(store_path):
    crop = SynthesisDataset(store_path, "train", crop=CROP, dem_norm="crop", train=False)[0]["dem"]
    assert abs(float(crop.mean())) < 1e-4 and abs(float(crop.std(unbiased=False)) - 1) < 1e-3
    ds = SynthesisDataset(store_path, "train", crop=CROP, dem_norm="tile", train=False)
    tile = _stored(store_path, ds.tile_ids[0], "dem")
    o = (SIZE - CROP) // 2
    expected = (tile[:, o : o + CROP, o : o + CROP] - tile.mean()) / tile.std()
    np.testing.assert_allclose(ds[0]["dem"].numpy(), expected, rtol=1e-4, atol=1e-4)


def test_bad_requests_name_the_store_or_option(store_path, tmp_path):
    with pytest.raises(UsageError, match="no modality 's2'"):
        SynthesisDataset(store_path, inputs=("seg", "s2"))
    with pytest.raises(UsageError, match="larger than the tiles"):
        SynthesisDataset(store_path, crop=SIZE + 1)
    with pytest.raises(UsageError, match="dem_norm"):
        SynthesisDataset(store_path, dem_norm="global")
    with pytest.raises(DataError, match="no complete tile in split 'val'"):
        SynthesisDataset(store_path, split="val", crop=CROP)
    with pytest.raises(DataError, match="no store"):
        SynthesisDataset(tmp_path / "missing.zarr", crop=CROP)


def test_class_ids_beyond_the_class_table_are_reported_with_the_tile(tmp_path):
    path = tmp_path / "bad.zarr"
    store = create_store(
        path,
        [TilePlan("1_1", "x", "train")],
        tile_shape=(8, 8),
        modalities=[modality("rgb"), modality("seg")],
        dataset="t",
        crs=None,
        classes=load_catalog().classes,
    )
    seg = np.full((8, 8), 12, dtype=np.uint8)
    store.write_tile("1_1", TileData(rgb=np.zeros((3, 8, 8), np.uint8), seg=seg))
    ds = SynthesisDataset(path, "train", inputs=("seg",), crop=None)
    with pytest.raises(DataError, match="tile 1_1 .* class id 12"):
        ds[0]


def test_pickles_without_zarr_handles(store_path):
    ds = SynthesisDataset(store_path, "train", crop=CROP)
    first = ds[0]
    assert ds._arrays is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._arrays is None
    assert torch.equal(clone[0]["rgb"], first["rgb"])


# ----------------------------------------------------------------------------- direct chunk reads


@settings(max_examples=80, deadline=None)
@given(
    name=st.sampled_from(["rgb", "dem", "seg", "sar_valid"]),
    pick=st.integers(0, 3),
    r0=st.integers(0, SIZE - 1),
    c0=st.integers(0, SIZE - 1),
    h=st.integers(1, SIZE),
    w=st.integers(1, SIZE),
)
def test_direct_chunk_reads_equal_zarr_reads(store_path, name, pick, r0, c0, h, w):
    store = open_store(store_path)
    tile = (1, 3)[pick % 2] if name == "sar_valid" else pick  # tiles 1 and 3 have SAR
    reader = store.reader(name)
    rows, cols = slice(r0, min(SIZE, r0 + h)), slice(c0, min(SIZE, c0 + w))
    got = reader.read(tile, rows, cols)
    assert reader._direct  # this package's layout on a local store
    expected = store.tile_array(name, tile)[..., rows, cols]  # through zarr
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_unwritten_chunks_read_as_the_fill_value(tmp_path):
    path = tmp_path / "sparse.zarr"
    store = create_store(
        path,
        [TilePlan("1_1", "x", "train")],
        tile_shape=(40, 40),
        modalities=[modality("dem"), modality("seg")],
        dataset="t",
        crs=None,
        classes=load_catalog().classes,
        layout=StoreLayout(chunk=20, codec="zstd", level=1),
    )
    seg = np.zeros((40, 40), np.uint8)
    seg[30:, 30:] = 4
    dem = np.full((1, 40, 40), np.nan, np.float32)
    dem[0, :20, :20] = 5.0
    store.write_tile("1_1", TileData(seg=seg, dem=dem))
    assert not (path / "tiles/1_1/seg/c/0/0").exists()  # zarr skips all-fill chunks
    got_seg = store.reader("seg").read(0, slice(10, 40), slice(10, 40))
    np.testing.assert_array_equal(got_seg, seg[10:, 10:])
    got_dem = store.reader("dem").read(0, slice(0, 40), slice(15, 25))
    np.testing.assert_array_equal(got_dem, dem[:, :, 15:25])  # NaN where never written


def test_other_layouts_are_read_through_zarr(tmp_path):
    import zarr

    path = tmp_path / "other.zarr"
    store = create_store(
        path, [TilePlan("1_1", "x", "train")], tile_shape=(30, 30),
        modalities=[modality("rgb"), modality("dem")], dataset="t", crs=None,
        classes=load_catalog().classes, layout=StoreLayout(chunk=16, codec="none"),
    )  # fmt: skip
    values = np.random.default_rng(1).integers(0, 255, (3, 30, 30), dtype=np.uint8)
    store.write_tile("1_1", TileData(rgb=values, dem=values[:1].astype("float32")))
    # someone rewrites the rgb array with one band per chunk: not this package's layout
    group = zarr.open_group(path / "tiles" / "1_1", mode="r+")
    del group["rgb"]
    group.create_array("rgb", shape=(3, 30, 30), chunks=(1, 16, 16), dtype="uint8")[:] = values
    zarr.consolidate_metadata(path / "tiles" / "1_1")
    reopened = open_store(path)
    reader = reopened.reader("rgb")
    np.testing.assert_array_equal(reader.read(0, slice(5, 29), slice(0, 30)), values[:, 5:29])
    assert reader._direct is False
    direct = reopened.reader("dem")  # bytes codec only, no compressor: still direct
    np.testing.assert_array_equal(
        direct.read(0, slice(3, 30), slice(14, 18)), values[:1, 3:30, 14:18].astype("float32")
    )
    assert direct._direct is True


def _batches(loader):
    return [(b["tile"], b["rgb"], b["seg"], b["dem"]) for b in loader]


def _same(a, b):
    return all(
        ta == tb and torch.equal(ra, rb) and torch.equal(sa, sb) and torch.equal(da, db)
        for (ta, ra, sa, da), (tb, rb, sb, db) in zip(a, b, strict=True)
    )


def _report_from_child(ds, queue):
    """Runs in a forked child: did it inherit the parent's handles, and did it replace them?"""
    import os

    inherited = ds._arrays is not None and ds._pid != os.getpid()
    rgb = ds[0]["rgb"].numpy()
    queue.put((inherited, ds._pid == os.getpid(), rgb))


def test_a_forked_process_reopens_the_store_instead_of_using_the_parents_handles(store_path):
    import multiprocessing as mp
    import os

    ds = SynthesisDataset(store_path, "train", crop=16, train=False)
    parent = ds[0]["rgb"].numpy()
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_report_from_child, args=(ds, queue))  # inherited, not pickled
    child.start()
    inherited, reopened, rgb = queue.get(timeout=60)
    child.join(60)
    assert child.exitcode == 0
    assert inherited and reopened
    np.testing.assert_array_equal(rgb, parent)
    assert ds._pid == os.getpid()  # the parent keeps its own handles


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_under_fork_and_spawn_with_persistent_workers(store_path, context):
    """Two persistent workers load what the main process loads, epoch after epoch."""
    ds = SynthesisDataset(store_path, "train", crop=16, seed=11)
    ds[0]  # open zarr in the parent first: the fork trap
    reference = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        reference.append(_batches(DataLoader(ds, batch_size=2, num_workers=0)))
    assert not _same(reference[0], reference[1])  # the epoch changes the crops

    loader = DataLoader(
        ds, batch_size=2, num_workers=2, multiprocessing_context=context, persistent_workers=True
    )
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        assert _same(_batches(loader), reference[epoch])
    del loader


@pytest.mark.parametrize("resize", [None, 16])
def test_compact_batches_expanded_on_the_device_equal_todays_batches(store_path, resize):
    """uint8 ids and uint8 RGB across the DataLoader, expanded after: the same tensors exactly."""
    from geosynth.ml.data.tensors import expand_compact

    kw = dict(inputs=("seg", "dem"), crop=CROP, resize=resize, seed=5, dem_norm="crop")
    full = SynthesisDataset(store_path, "train", **kw)
    compact = SynthesisDataset(store_path, "train", compact=True, **kw)
    sample = compact[0]
    assert sample["seg"].dtype == torch.uint8 and sample["seg"].ndim == 2
    assert sample["rgb"].dtype == (torch.uint8 if resize is None else torch.float32)
    for epoch in (0, 1):  # flips and windows differ between epochs
        full.set_epoch(epoch)
        compact.set_epoch(epoch)
        expected = list(DataLoader(full, batch_size=2, num_workers=0))
        got = list(DataLoader(compact, batch_size=2, num_workers=1))
        for a, b in zip(expected, got, strict=True):
            b = expand_compact(b, full.num_classes, "cpu")
            assert set(a) == set(b)
            for name in ("seg", "dem", "rgb", "window"):
                assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape
                assert torch.equal(a[name], b[name]), name
            assert a["tile"] == b["tile"]


@pytest.mark.parametrize("device", ["cpu", None])
def test_expansion_on_the_cpu_restores_torchs_thread_count(store_path, device):
    """The expansion runs on one thread (so the pool does not spin against the workers) and
    leaves torch's intra-op thread count as it found it, also when it fails."""
    from geosynth.ml.data.tensors import expand_compact

    compact = SynthesisDataset(store_path, "train", inputs=("seg", "dem"), crop=CROP, compact=True)
    batch = next(iter(DataLoader(compact, batch_size=2, num_workers=0)))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = expand_compact(batch, compact.num_classes, device)
        assert torch.get_num_threads() == 2
        assert out["seg"].dtype == torch.float32 and out["seg"].shape[1] == compact.num_classes
        bad = dict(batch, seg=torch.zeros(5, dtype=torch.uint8))  # not a label map
        with pytest.raises(IndexError):
            expand_compact(bad, compact.num_classes, device)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
