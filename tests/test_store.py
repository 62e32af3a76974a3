"""The store contract: round trip, concurrent writers, interrupted tiles, verify, info."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal

import numpy as np
import pytest
import zarr
from affine import Affine
from click.testing import CliRunner

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import DataError, StoreError, UsageError
from geosynth.store import (
    COMPLETE,
    STORE_VERSION,
    TileData,
    TilePlan,
    create_store,
    modality,
    open_store,
    summarize,
    verify,
)

H = W = 64
TILES = ["356_5645", "357_5645", "356_5646", "357_5646"]


def _transform(tile_id):
    e, n = (int(v) for v in tile_id.split("_"))
    return Affine(1000 / W, 0, e * 1000, 0, -1000 / H, (n + 1) * 1000)


def make_store(path, classes, sar=True, tiles=TILES):
    plans = [
        TilePlan(
            t, region="demo", split="test" if t == "357_5646" else "train", transform=_transform(t)
        )
        for t in tiles
    ]
    mods = [modality("rgb"), modality("dem"), modality("seg")]
    if sar:
        mods.append(modality("sar", channels=1, bands=("HH",)))
    return create_store(
        path,
        plans,
        tile_shape=(H, W),
        modalities=mods,
        dataset="demo",
        crs="EPSG:25832",
        classes=classes,
        provenance={"parameters": {"x": 1}},
    )


def tile_data(seed, sar=True):
    rng = np.random.default_rng(seed)
    data = TileData(
        rgb=rng.integers(0, 256, (3, H, W), dtype=np.uint8),
        dem=rng.normal(60, 5, (1, H, W)).astype("float32"),
        seg=rng.integers(0, 11, (H, W), dtype=np.uint8),
        sources={"dop": [f"tile{seed}.jp2"]},
    )
    if sar:
        data.sar = rng.random((1, H, W), dtype=np.float32)
        data.sar_valid = rng.random((H, W)) > 0.1
    return data


def test_round_trip(tmp_path, geonrw_classes):
    store = make_store(tmp_path / "s.zarr", geonrw_classes)
    data = tile_data(1)
    store.write_tile("357_5645", data)
    s = open_store(tmp_path / "s.zarr")
    i = s.index("357_5645")
    np.testing.assert_array_equal(s.read("rgb", i), data.rgb)
    np.testing.assert_array_equal(s.read("dem", i), data.dem)
    np.testing.assert_array_equal(s.read("seg", i), data.seg)
    np.testing.assert_array_equal(s.read("sar", i), data.sar)
    np.testing.assert_array_equal(s.read("sar_valid", i), data.sar_valid)
    np.testing.assert_array_equal(
        s.read("rgb", i, (slice(5, 15), slice(20, 30))), data.rgb[:, 5:15, 20:30]
    )
    assert s.tiles() == [i]
    assert s.transform(i) == _transform("357_5645")
    assert s.tile_crs(i) == "EPSG:25832"
    assert s.sources(i) == {"dop": ["tile1.jp2"]}
    assert s.num_classes == 11
    np.testing.assert_array_equal(s.class_hist()[i], np.bincount(data.seg.ravel(), minlength=11))
    assert s.attrs["geosynth:store_version"] == STORE_VERSION
    assert s.provenance["catalog_version"] == load_catalog().version and s.provenance[
        "parameters"
    ] == {"x": 1}


def test_plain_zarr_reader_sees_the_contract(tmp_path, geonrw_classes):
    """What a downstream user sees opening the store with zarr alone."""
    make_store(tmp_path / "s.zarr", geonrw_classes).write_tile("356_5645", tile_data(2))
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert g.attrs["proj:code"] == "EPSG:25832" and g.attrs["geosynth:store_version"] == 2
    assert list(g["tile_id"][:]) == TILES
    assert g["state"][0] == COMPLETE and g["state"][1] == 0
    assert tuple(g["transform"][0]) == tuple(_transform("356_5645"))[:6]
    for name in g.array_keys():
        assert g[name].metadata.dimension_names is not None, name
    tile = g["tiles/356_5645"]
    assert tile["rgb"].metadata.dimension_names == ("rgb_band", "y", "x")
    assert tile["sar"].metadata.dimension_names == ("sar_band", "y", "x")
    assert tile["seg"].metadata.dimension_names == ("y", "x")
    assert tile["rgb"].shape == (3, H, W) and tile["rgb"].dtype == np.uint8
    assert list(tile["rgb_band"][:]) == ["red", "green", "blue"]
    assert tile.attrs["spatial:transform"] == list(_transform("356_5645"))[:6]
    assert tile.attrs["spatial:dimensions"] == ["y", "x"]
    assert tile.attrs["proj:code"] == "EPSG:25832"
    assert {c["name"] for c in tile.attrs["zarr_conventions"]} == {"spatial", "proj"}
    assert tile["seg"].attrs["flag_values"][:3] == [0, 1, 2]
    assert tile["seg"].attrs["flag_meanings"].split()[0] == "unlabelled"
    assert "tiles/357_5645" not in g  # a tile's group is written with the tile


def test_tile_dataset(tmp_path, geonrw_classes):
    store = make_store(tmp_path / "s.zarr", geonrw_classes)
    data = tile_data(3)
    store.write_tile("356_5646", data)
    ds = store.tile_dataset("356_5646")
    assert ds.sizes["x"] == W and ds.sizes["y"] == H
    # pixel centres: first x is half a pixel east of the west edge
    assert ds.x.values[0] == pytest.approx(356_000 + 1000 / W / 2)
    assert ds.y.values[0] == pytest.approx(5_647_000 - 1000 / H / 2)
    assert "ETRS89" in ds.spatial_ref.attrs["crs_wkt"]
    assert ds.attrs["split"] == "train" and ds.attrs["proj:code"] == "EPSG:25832"
    np.testing.assert_array_equal(ds["seg"].values, data.seg)
    np.testing.assert_array_equal(ds["rgb"].sel(rgb_band="green").values, data.rgb[1])
    with pytest.raises(DataError, match="not complete"):
        store.tile_dataset("356_5645")
    with pytest.raises(DataError, match="nearest: 356_5645"):
        store.tile_dataset("356_5644")


def test_rewrite_is_idempotent(tmp_path, geonrw_classes):
    store = make_store(tmp_path / "s.zarr", geonrw_classes)
    store.write_tile("356_5645", tile_data(4))
    first = {
        p.relative_to(tmp_path): p.read_bytes()
        for p in (tmp_path / "s.zarr").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    }
    store.write_tile("356_5645", tile_data(4))
    second = {
        p.relative_to(tmp_path): p.read_bytes()
        for p in (tmp_path / "s.zarr").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    }
    assert first == second


def test_missing_sar_is_recorded_absent(tmp_path, geonrw_classes):
    store = make_store(tmp_path / "s.zarr", geonrw_classes)
    store.write_tile("356_5645", tile_data(5, sar=False))
    assert store.tiles() == [0]
    assert store.tiles(require=["sar"]) == []
    assert "sar" not in store.tile_dataset("356_5645")


def _write_in_child(path, tile_ids, seed):
    s = open_store(path, mode="r+")
    for k, t in enumerate(tile_ids):
        s.write_tile(t, tile_data(seed + k))


def test_two_processes_write_different_tiles(tmp_path, geonrw_classes):
    path = tmp_path / "s.zarr"
    make_store(path, geonrw_classes)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_write_in_child, args=(path, TILES[:2], 10)),
        ctx.Process(target=_write_in_child, args=(path, TILES[2:], 20)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = open_store(path)
    assert s.tiles() == [0, 1, 2, 3]
    assert verify(s) == []
    np.testing.assert_array_equal(s.read("rgb", 3), tile_data(21).rgb)
    np.testing.assert_array_equal(s.read("dem", 0), tile_data(10).dem)


def _killed_mid_tile(path):
    s = open_store(path, mode="r+")

    def die(name):
        if name == "dem":
            os.kill(os.getpid(), signal.SIGKILL)

    s.write_tile("357_5645", tile_data(7), progress=die)


def test_tile_killed_half_way(tmp_path, geonrw_classes):
    path = tmp_path / "s.zarr"
    make_store(path, geonrw_classes).write_tile("356_5645", tile_data(6))
    p = mp.get_context("spawn").Process(target=_killed_mid_tile, args=(path,))
    p.start()
    p.join(120)
    assert p.exitcode == -signal.SIGKILL
    s = open_store(path)
    assert s.tiles() == [0]  # readers do not count the killed tile
    problems = [str(p) for p in verify(s)]
    assert "357_5645: incomplete (being written)" in problems
    assert "356_5646: incomplete (planned)" in problems
    # the rgb it managed to write is there, but the tile does not count
    assert s.read("rgb", 1).any()
    result = CliRunner().invoke(cli, ["verify", str(path)])
    assert result.exit_code == 1
    assert "357_5645: incomplete (being written)" in result.output


def test_verify_finds_bad_values(tmp_path, geonrw_classes):
    store = make_store(tmp_path / "s.zarr", geonrw_classes, tiles=TILES[:3])
    d = tile_data(8)
    d.dem[0, 3, 3] = np.nan
    store.write_tile("356_5645", d)
    d = tile_data(9)
    d.seg[0, :5] = 17
    store.write_tile("357_5645", d)
    d = tile_data(10)
    d.sar[0, 1, 1] = 1.5
    d.sar_valid[1, 1] = True
    d.sar[0, 2, 2] = 7.0  # outside [0, 1] but not valid: fine
    d.sar_valid[2, 2] = False
    store.write_tile("356_5646", d)
    problems = [str(p) for p in verify(store)]
    assert problems == [
        "356_5645: dem has 1 NaN pixels",
        "357_5645: seg has 5 pixels with class ids above 10 (max 17)",
        "356_5646: sar has 1 valid pixels outside [0, 1]",
    ]


def test_verify_sound_store_and_info(tmp_path, geonrw_classes):
    path = tmp_path / "s.zarr"
    store = make_store(path, geonrw_classes)
    for k, t in enumerate(TILES):
        store.write_tile(t, tile_data(30 + k, sar=k % 2 == 0))
    runner = CliRunner()
    result = runner.invoke(cli, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["info", "--json", str(path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary == summarize(store)
    assert summary["splits"] == {"train": 3, "test": 1}
    assert summary["modalities"] == {"rgb": 4, "dem": 4, "seg": 4, "sar": 2}
    assert sum(summary["class_hist"].values()) == 4 * H * W
    text = runner.invoke(cli, ["info", str(path)]).output
    assert "splits: test 1, train 3" in text and "buildings" in text


def test_refusals(tmp_path, geonrw_classes):
    path = tmp_path / "s.zarr"
    make_store(path, geonrw_classes)
    with pytest.raises(StoreError, match="already exists"):
        make_store(path, geonrw_classes)
    with pytest.raises(UsageError, match="duplicate tile ids"):
        make_store(tmp_path / "d.zarr", geonrw_classes, tiles=["1_1", "1_1"])
    assert not (tmp_path / "d.zarr").exists()
    store = open_store(path, mode="r+")
    with pytest.raises(DataError, match="rgb has shape"):
        store.write_tile("356_5645", TileData(rgb=np.zeros((3, 10, 10), np.uint8)))
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not a geosynth store"):
        open_store(tmp_path / "plain.zarr")
    # nothing from failed creations is left beside the stores
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.zarr", "s.zarr"]
