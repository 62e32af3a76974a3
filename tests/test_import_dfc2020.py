"""import-dfc2020 on a seeded generator that follows the contest's public layout exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import UsageError
from geosynth.ingest.dfc2020 import import_dfc2020, s1_to_sar, s2_to_rgb
from geosynth.store import open_store, verify

SIZE = 256  # the contest's patch size
ZONES = (32631, 32633, 32755)  # UTM 31N, 33N and 55S: patches lie in many zones
FOLDERS = {
    "ROIs0000_test": {"s1": "s1_0", "s2": "s2_0", "dfc": "dfc_0", "lc": "lc_0"},
    "ROIs0000_validation": {
        "s1": "s1_validation",
        "s2": "s2_validation",
        "dfc": "dfc_validation",
        "lc": "lc_validation",
    },
}
TEST_PATCHES = (0, 9, 19, 33)  # contest test folder
VALIDATION_PATCHES = (1, 29, 40)  # contest validation folder


def patch_path(root, roi, kind, number):
    """``<root>/ROIs0000_test/s2_0/ROIs0000_test_s2_0_p<N>.tif`` and its siblings."""
    return root / roi / FOLDERS[roi][kind] / f"{roi}_{kind}_0_p{number}.tif"


def write_patch(root, roi, number, rng, *, bands=None, shift=None):
    """One patch: S1 (2 x float32 dB, a few NaN), S2 (13 x uint16 DN), DFC labels (uint16 1..10)
    and the MODIS lc file the importer must ignore; in one of ZONES by the patch number."""
    epsg = ZONES[number % len(ZONES)]
    north = epsg < 32700
    transform = Affine(10, 0, 300000 + 2560 * number, 0, -10, 5600000 if north else 7400000)
    bands = bands or {}
    s1 = rng.uniform(-30, 10, (bands.get("s1", 2), SIZE, SIZE)).astype(np.float32)
    s1[:, :3, :5] = np.nan
    arrays = {
        "s1": s1,
        "s2": rng.integers(0, 6000, (bands.get("s2", 13), SIZE, SIZE), dtype=np.uint16),
        "dfc": rng.integers(1, 11, (1, SIZE, SIZE), dtype=np.uint16),
        "lc": rng.integers(1, 18, (4, SIZE, SIZE), dtype=np.uint16),
    }
    for kind, data in arrays.items():
        path = patch_path(root, roi, kind, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        t = shift if (shift is not None and kind == "dfc") else transform
        with rasterio.open(
            path, "w", driver="GTiff", width=SIZE, height=SIZE, count=data.shape[0],
            dtype=data.dtype, crs=f"EPSG:{epsg}", transform=t,
        ) as dst:  # fmt: skip
            dst.write(data)


def make_dfc2020(root, seed=0):
    rng = np.random.default_rng(seed)
    for number in TEST_PATCHES:
        write_patch(root, "ROIs0000_test", number, rng)
    for number in VALIDATION_PATCHES:
        write_patch(root, "ROIs0000_validation", number, rng)
    return root


@pytest.mark.slow
def test_import_on_a_dask_scheduler_equals_the_local_import(imported, tmp_path, assert_same_store):
    from dask.distributed import LocalCluster

    root, reference, _ = imported
    out = tmp_path / "dask.zarr"
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        result = CliRunner().invoke(
            cli, ["-q", "import-dfc2020", str(root), "--out", str(out),
                  "--scheduler", cluster.scheduler_address],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "7 tile(s) imported" in result.output
    a, b = open_store(reference), open_store(out)
    assert a.tile_ids == b.tile_ids and b.tiles() == list(range(len(b)))
    assert_same_store(out, reference)
    np.testing.assert_array_equal(a.group["crs"][:], b.group["crs"][:])
    both = CliRunner().invoke(
        cli, ["import-dfc2020", str(root), "--out", str(tmp_path / "x.zarr"), "--workers", "2",
              "--scheduler", cluster.scheduler_address],
    )  # fmt: skip
    assert both.exit_code == 2 and "--workers or --scheduler" in both.output


def _read(path):
    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dfc")
    root = make_dfc2020(tmp / "DFC2020")
    out = tmp / "dfc2020.zarr"
    report = import_dfc2020(root, out)
    return root, out, report


def test_patches_land_in_the_store_contract(imported):
    root, out, report = imported
    assert report.ok and not report.excluded
    store = open_store(out)
    assert store.dataset == "dfc2020" and store.tile_shape == (SIZE, SIZE)
    assert store.crs is None  # no group CRS: every tile has its own
    expected = [f"ROIs0000_test_p{n}" for n in TEST_PATCHES] + [
        f"ROIs0000_validation_p{n}" for n in VALIDATION_PATCHES
    ]
    assert sorted(store.tile_ids) == sorted(expected)
    catalog = load_catalog()
    norm = catalog.dfc2020
    assert store.classes.keys == tuple(c.key for c in norm.classes)
    assert store.modality_spec("s2").dtype == "uint16" and store.modality_spec("s2").channels == 13
    assert store.modality_spec("sar").bands == ("VV", "VH")
    attrs = store.attrs["geosynth:normalisation"]
    assert attrs["rgb"]["dtype"] == "uint8" and attrs["rgb"]["s2_bands"] == [4, 3, 2]
    assert attrs["sar"]["s1_db_clip"] == [-20.0, 5.0]
    lo, hi = norm.s1_db_clip
    for i, tile in enumerate(store.tile_ids):
        roi, number = tile.rsplit("_p", 1)
        number = int(number)
        # the paper's split: contest test -> train, validation -> test
        assert store.splits[i] == ("train" if roi == "ROIs0000_test" else "test")
        assert store.regions[i] == roi
        s1 = _read(patch_path(root, roi, "s1", number)).astype(np.float64)
        s2 = _read(patch_path(root, roi, "s2", number))
        dfc = _read(patch_path(root, roi, "dfc", number))[0]
        valid = store.read("sar_valid", i)
        assert np.array_equal(valid, np.isfinite(s1).all(axis=0))
        sar = store.read("sar", i)
        expected_sar = np.clip((s1 - lo) / (hi - lo), 0, 1).astype(np.float32)
        assert np.allclose(sar[:, valid], expected_sar[:, valid], atol=1e-6)
        assert (sar[:, ~valid] == 0).all()
        assert np.array_equal(store.read("s2", i), s2)
        assert np.array_equal(store.read("seg", i), dfc.astype(np.uint8))
        rgb = store.read("rgb", i)
        assert rgb.dtype == np.uint8
        assert np.array_equal(rgb, np.rint(np.clip(s2[[3, 2, 1]] / 3500, 0, 1) * 255))
        # each patch keeps its own CRS and transform
        with rasterio.open(patch_path(root, roi, "s2", number)) as src:
            assert store.tile_crs(i) == f"EPSG:{src.crs.to_epsg()}"
            assert store.transform(i) == src.transform
        assert store.tile_crs(i) == f"EPSG:{ZONES[number % len(ZONES)]}"
    assert verify(store) == []


def test_tile_dataset_returns_each_patchs_crs(imported):
    _, out, _ = imported
    store = open_store(out)
    zones = set()
    for tile in store.tile_ids:
        ds = store.tile_dataset(tile)
        epsg = CRS.from_wkt(ds.spatial_ref.attrs["crs_wkt"]).to_epsg()
        assert ds.attrs["proj:code"] == f"EPSG:{epsg}"
        assert ds.x.values[0] == pytest.approx(store.transform(store.index(tile)).c + 5)
        assert set(ds.data_vars) == {"rgb", "seg", "sar", "sar_valid", "s2"}
        zones.add(epsg)
    assert zones == set(ZONES)


def test_reads_through_synthesis_dataset(imported):
    from geosynth.ml.data.datasets import SynthesisDataset

    _, out, _ = imported
    ds = SynthesisDataset(out, "test", inputs=("seg", "sar"), output="rgb", crop=128, train=False)
    assert len(ds) == len(VALIDATION_PATCHES)
    store = open_store(out)
    sample = ds[0]
    i = store.index(sample["tile"])
    window = slice(64, 192)
    assert sample["seg"].shape == (11, 128, 128) and sample["sar"].shape == (2, 128, 128)
    expected = store.read("rgb", i)[:, window, window].astype(np.float32) / 127.5 - 1
    assert np.allclose(sample["rgb"].numpy(), expected, atol=1e-6)
    sar = store.read("sar", i)[:, window, window] * 2 - 1
    valid = store.read("sar_valid", i)[window, window]
    assert np.allclose(sample["sar"].numpy()[:, valid], sar[:, valid], atol=1e-6)


def test_split_of_the_published_code(tmp_path):
    root = make_dfc2020(tmp_path / "DFC2020", seed=1)
    report = import_dfc2020(root, tmp_path / "code.zarr", split_rule="code")
    store = open_store(tmp_path / "code.zarr")
    test = sorted(store.tile_ids[i] for i in store.tiles("test"))
    # numbers ending in 9, from both folders
    assert test == ["ROIs0000_test_p19", "ROIs0000_test_p9", "ROIs0000_validation_p29"]
    assert "ends in 9" in report.notes[0]
    with pytest.raises(UsageError, match="holds tile ROIs0000_test_p9 in split 'test', this"):
        import_dfc2020(root, tmp_path / "code.zarr", split_rule="paper")
    with pytest.raises(UsageError, match="unknown split rule"):
        import_dfc2020(root, tmp_path / "x.zarr", split_rule="random")


def test_bad_patches_reported_and_cli(tmp_path):
    rng = np.random.default_rng(3)
    root = tmp_path / "DFC2020"
    write_patch(root, "ROIs0000_test", 1, rng)
    write_patch(root, "ROIs0000_test", 2, rng)
    patch_path(root, "ROIs0000_test", "s1", 2).unlink()
    write_patch(root, "ROIs0000_test", 3, rng, bands={"s2": 12})
    write_patch(root, "ROIs0000_test", 4, rng, shift=Affine(10, 0, 0, 0, -10, 0))
    write_patch(root, "ROIs0000_validation", 5, rng)
    with rasterio.open(patch_path(root, "ROIs0000_validation", "dfc", 5), "r+") as dst:
        dst.write(np.full((1, SIZE, SIZE), 11, dtype=np.uint16))
    runner = CliRunner()
    out = tmp_path / "d.zarr"
    result = runner.invoke(cli, ["-q", "import-dfc2020", str(root), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "FAILED ROIs0000_validation_p5" in result.output and "class ids 11..11" in result.output
    report = json.loads((tmp_path / "d.zarr.report.json").read_text())
    assert report["done"] == ["ROIs0000_test_p1"]
    assert report["excluded"]["ROIs0000_test_p2"] == "ROIs0000_test_p2: missing s1 (have dfc, s2)"
    assert "12 band(s), a DFC2020 s2 file has 13" in report["excluded"]["ROIs0000_test_p3"]
    assert "dfc and s2 lie on different grids" in report["excluded"]["ROIs0000_test_p4"]
    # once the labels are fixed, a rerun (two workers) finishes the store
    with rasterio.open(patch_path(root, "ROIs0000_validation", "dfc", 5), "r+") as dst:
        dst.write(np.full((1, SIZE, SIZE), 10, dtype=np.uint16))
    result = runner.invoke(
        cli, ["-q", "import-dfc2020", str(root), "--out", str(out), "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "1 tile(s) imported, 1 already complete" in result.output
    assert runner.invoke(cli, ["-q", "verify", str(out)]).exit_code == 0
    result = runner.invoke(cli, ["import-dfc2020", str(root), "--out", "x", "--split-rule", "x"])
    assert result.exit_code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(cli, ["import-dfc2020", str(empty), "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "no DFC2020 patches" in result.output
    assert not (tmp_path / "e").exists()


@settings(max_examples=50, deadline=None)
@given(
    db=st.lists(st.floats(-60, 40) | st.just(float("nan")), min_size=2, max_size=2),
    dn=st.lists(st.integers(0, 65535), min_size=13, max_size=13),
)
def test_normalisation_invariants(db, dn):
    norm = load_catalog().dfc2020
    s1 = np.array(db, dtype=np.float32)[:, None, None]  # (2, 1, 1)
    sar, valid = s1_to_sar(s1, norm.s1_db_clip)
    assert valid[0, 0] == bool(np.isfinite(s1).all())
    assert ((sar >= 0) & (sar <= 1)).all()
    if valid[0, 0]:
        lo, hi = norm.s1_db_clip
        for value, out in zip(db, sar[:, 0, 0], strict=True):
            expected = min(max((np.float32(value) - lo) / (hi - lo), 0.0), 1.0)
            assert out == pytest.approx(expected, abs=1e-6)
            assert (out == 0) == (value <= lo) and (out == 1) == (value >= hi)
    s2 = np.array(dn, dtype=np.uint16)[:, None, None]  # (13, 1, 1)
    rgb = s2_to_rgb(s2, norm.s2_rgb_bands, norm.s2_clip)[:, 0, 0]
    for band, value in zip(norm.s2_rgb_bands, rgb, strict=True):
        source = int(s2[band - 1, 0, 0])
        assert value == (255 if source >= 3500 else round(source / 3500 * 255))
