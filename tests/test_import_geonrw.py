"""import-geonrw: the real GeoNRW-layout samples and generated georeferenced tiles -> stores."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import tarfile
import warnings

import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from geosynth.catalog import default_catalog_path, load_catalog, parse_catalog
from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.ingest.geonrw import import_geonrw, transform_from_name
from geosynth.sources.sar import normalise
from geosynth.store import WRITING, open_store, summarize, verify

SIZE = 64  # generated tiles: SIZE x SIZE px
NRW = "EPSG:25832"


def _read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read()


def write_tile(
    folder, stem, rng, *, georef=True, size=SIZE, shapes=None, dem_dtype="float32", sar=None
):
    """One published tile: rgb.jp2 (lossless), dem.tif, seg.tif and optionally sar.tif.

    ``georef``: write the tile's CRS and a 1 m transform from its name ``E_N``;
    ``shapes``: per-member (H, W) overrides; ``sar``: an amplitude array to write.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shapes = shapes or {}
    profile = {}
    if georef:
        e, n = (int(v) for v in stem.split("_"))
        profile = {"crs": NRW, "transform": Affine(1, 0, e * 1000, 0, -1, n * 1000 + size)}

    def write(kind, ext, array, **extra):
        h, w = array.shape[-2:]
        data = array if array.ndim == 3 else array[None]
        with warnings.catch_warnings():  # rasterio warns about files without georeferencing
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            dst = rasterio.open(
            folder / f"{stem}_{kind}.{ext}", "w", width=w, height=h, count=data.shape[0],
            dtype=data.dtype, **profile, **extra,
        )  # fmt: skip
        with dst:
            dst.write(data)

    def shape(kind):
        return shapes.get(kind, (size, size))

    write(
        "rgb", "jp2", rng.integers(0, 256, (3, *shape("rgb")), dtype=np.uint8),
        driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES",
    )  # fmt: skip
    dem = rng.random(shape("dem")) * 200 + 30
    write("dem", "tif", dem.astype(dem_dtype), driver="GTiff")
    write("seg", "tif", rng.integers(0, 11, shape("seg"), dtype=np.uint8), driver="GTiff")
    if sar is not None:
        write("sar", "tif", sar.astype("float32"), driver="GTiff")


def _same_pixels(store, index, folder, stem):
    assert np.array_equal(store.read("rgb", index), _read(folder / f"{stem}_rgb.jp2"))
    assert np.array_equal(store.read("seg", index), _read(folder / f"{stem}_seg.tif")[0])
    source_dem = _read(folder / f"{stem}_dem.tif")
    dem = store.read("dem", index)
    assert dem.dtype == np.float32
    assert np.array_equal(dem, source_dem.astype(np.float32))


# --------------------------------------------------------------------------- the real samples


def test_real_samples_bit_exact_without_georeferencing(realdata, tmp_path, caplog):
    root = realdata / "geonrw_layout"
    out = tmp_path / "geonrw.zarr"
    with caplog.at_level(logging.WARNING, logger="geosynth"):
        report = import_geonrw(root, out)
    cities = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert report.ok and not report.excluded
    store = open_store(out)
    assert store.tile_shape == (100, 100) and store.dataset == "geonrw"
    # "0_0" exists in every city: ids are qualified by the city
    assert sorted(store.tile_ids) == sorted(f"{c}_{s}" for c in cities for s in ("0_0", "1_1"))
    for i, tile in enumerate(store.tile_ids):
        city, stem = tile.split("_", 1)
        _same_pixels(store, i, root / city, stem)
        assert store.regions[i] == city
        assert store.splits[i] == ("test" if city in ("duesseldorf", "herne", "neuss") else "train")
        # 0_0 is not E_N in km inside EPSG:25832's area: no transform
        assert store.transform(i) is None
        sources = store.sources(i)
        assert sources["dem"] == "uint8 cast to float32, values taken as metres"
        assert sources["georeferencing"].startswith("none")
    assert sorted(summarize(store)["without_transform"]) == sorted(store.tile_ids)
    assert verify(store) == []
    assert "stored without georeferencing" in caplog.text
    ds = store.tile_dataset(store.tile_ids[0])
    assert list(ds.x.values[:2]) == [0.0, 1.0]  # pixel indices without a transform


def test_real_samples_read_through_synthesis_dataset(realdata, tmp_path):
    from geosynth.ml.data.datasets import SynthesisDataset

    out = tmp_path / "geonrw.zarr"
    import_geonrw(realdata / "geonrw_layout", out)
    ds = SynthesisDataset(out, "test", inputs=("seg", "dem"), output="rgb", crop=64, train=False)
    store = open_store(out)
    assert len(ds) == len(store.tiles("test")) == 2
    sample = ds[0]
    i = store.index(sample["tile"])
    rows, cols = slice(18, 82), slice(18, 82)  # the centre crop
    expected_rgb = store.read("rgb", i)[:, rows, cols].astype(np.float32) / 127.5 - 1
    assert np.allclose(sample["rgb"].numpy(), expected_rgb, atol=1e-6)
    assert sample["seg"].shape == (11, 64, 64)
    assert np.array_equal(sample["seg"].argmax(0).numpy(), store.read("seg", i)[rows, cols])
    assert np.allclose(sample["dem"].numpy()[0], store.read("dem", i)[0, rows, cols])


# --------------------------------------------------------------------------- generated tiles


@pytest.fixture
def layout(tmp_path):
    """koeln (train): 2 georeferenced tiles and 1 without; herne (test): 1 georeferenced."""
    rng = np.random.default_rng(6)
    root = tmp_path / "nrw"
    write_tile(root / "koeln", "356_5645", rng)
    write_tile(root / "koeln", "357_5645", rng, dem_dtype="uint16")
    write_tile(root / "koeln", "358_5645", rng, georef=False)
    write_tile(root / "herne", "380_5710", rng)
    return root


def test_georeferencing_from_files_and_names(layout, tmp_path, caplog):
    out = tmp_path / "g.zarr"
    with caplog.at_level(logging.WARNING, logger="geosynth"):
        report = import_geonrw(layout, out)
    assert report.ok and report.done == ["356_5645", "357_5645", "358_5645", "380_5710"]
    store = open_store(out)
    for tile in report.done:
        city = "herne" if tile == "380_5710" else "koeln"
        _same_pixels(store, store.index(tile), layout / city, tile)
    # read from the files
    i = store.index("356_5645")
    assert store.transform(i) == Affine(1, 0, 356000, 0, -1, 5645000 + SIZE)
    assert store.tile_crs(i) == NRW
    assert store.splits[store.index("380_5710")] == "test"
    # derived from the name: the tile covers its whole km, SIZE px -> 1000/SIZE m pixels
    j = store.index("358_5645")
    assert store.transform(j) == Affine(1000 / SIZE, 0, 358000, 0, -1000 / SIZE, 5646000)
    assert "derived from the name 358_5645" in store.sources(j)["georeferencing"]
    assert "transforms derived from their names" in caplog.text
    ds = store.tile_dataset("358_5645")
    assert ds.x.values[0] == pytest.approx(358000 + 500 / SIZE)
    assert "25832" in ds.spatial_ref.attrs["crs_wkt"]
    assert store.sources(store.index("357_5645"))["dem"].startswith("uint16 cast to float32")
    assert summarize(store)["without_transform"] == []
    assert verify(store) == []


@settings(max_examples=60, deadline=None)
@given(
    e=st.integers(0, 9999),
    n=st.integers(0, 9999),
    size=st.sampled_from([100, 250, 1000]),
)
def test_transform_from_name_only_inside_the_grid_area(e, n, size):
    grid = load_catalog().grid
    stem = f"{e:03d}_{n:04d}"
    transform = transform_from_name(stem, (size, size), grid)
    if 280 <= e <= 540 and 5560 <= n <= 5830:  # NRW
        assert transform is not None
    if not (231 <= e <= 769 and 4042 <= n <= 9330):  # outside EPSG:25832's area of use
        assert transform is None
    if transform is not None:
        left, top = transform @ (0, 0)
        right, bottom = transform @ (size, size)
        assert (left, bottom, right, top) == (e * 1000, n * 1000, e * 1000 + 1000, n * 1000 + 1000)


def test_bad_tiles_are_reported_and_the_rest_imports(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "nrw"
    write_tile(root / "bonn", "364_5620", rng)
    write_tile(root / "bonn", "365_5620", rng)
    (root / "bonn" / "365_5620_dem.tif").unlink()  # missing member
    write_tile(root / "bonn", "366_5620", rng, shapes={"seg": (SIZE, SIZE - 1)})
    write_tile(root / "bonn", "367_5620", rng)
    (root / "bonn" / "367_5620_seg.tif").write_bytes(b"not a tiff")  # unreadable
    write_tile(root / "bonn", "368_5620", rng, size=SIZE // 2)  # another tile size
    write_tile(root / "wesel", "330_5730", rng)  # a city the catalog does not know
    write_tile(root / "bonn", "369_5620", rng)
    with rasterio.open(root / "bonn" / "369_5620_seg.tif", "r+") as dst:  # class 12
        dst.write(np.full((1, SIZE, SIZE), 12, dtype=np.uint8))
    out = tmp_path / "g.zarr"
    report = import_geonrw(root, out)
    assert report.done == ["364_5620"]
    assert report.failed == {
        "369_5620": f"{root / 'bonn' / '369_5620_seg.tif'}: class ids 12..12 outside 0..10"
    }
    excluded = report.excluded
    assert excluded["365_5620"] == "bonn/365_5620: missing dem (have rgb, seg)"
    assert "members of different shapes (dem 64x64, rgb 64x64, seg 64x63)" in excluded["366_5620"]
    assert "367_5620_seg.tif: not a readable raster" in excluded["367_5620"]
    assert "32x32 px, the import's tiles are 64x64" in excluded["368_5620"]
    assert "--assign CITY=SPLIT" in excluded["330_5730"]
    assert any("'wesel' (1 tiles) is not in the catalog" in n for n in report.notes)
    saved = json.loads((tmp_path / "g.zarr.report.json").read_text())
    assert saved["excluded"] == excluded and saved["failed"] == report.failed
    assert open_store(out).tile_ids == ["364_5620", "369_5620"]
    # the unknown city imports once its split is given
    report = import_geonrw(root, tmp_path / "h.zarr", assign={"wesel": "test"})
    store = open_store(tmp_path / "h.zarr")
    i = store.index("330_5730")
    assert (store.regions[i], store.splits[i]) == ("wesel", "test")
    with pytest.raises(UsageError, match="holds tile 330_5730 in split 'test'"):
        import_geonrw(root, tmp_path / "h.zarr", assign={"wesel": "train"})
    with pytest.raises(UsageError, match="split must be train or test"):
        import_geonrw(root, tmp_path / "x.zarr", assign={"wesel": "val"})
    with pytest.raises(DataError, match="no GeoNRW files"):
        import_geonrw(tmp_path / "g.zarr", tmp_path / "y.zarr")
    assert not (tmp_path / "x.zarr").exists() and not (tmp_path / "y.zarr").exists()


def test_sar_normalised_with_the_catalog_rule(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "nrw"
    amplitude = rng.random((SIZE, SIZE)) * 400 + 1
    amplitude[:10] = 0  # no data: 10 of 64 rows, valid fraction 0.84
    write_tile(root / "essen", "360_5700", rng, sar=amplitude)
    sparse = amplitude.copy()
    sparse[:40] = 0  # valid fraction 0.375 < 0.7
    write_tile(root / "essen", "361_5700", rng, sar=sparse)
    write_tile(root / "essen", "362_5700", rng)  # no sar.tif
    out = tmp_path / "g.zarr"
    report = import_geonrw(root, out, with_sar=True)
    assert report.ok
    store = open_store(out)
    norm = load_catalog().sar
    i = store.index("360_5700")
    valid = store.read("sar_valid", i)
    assert valid.sum() == (SIZE - 10) * SIZE and not valid[:10].any()
    expected = normalise(amplitude.astype(np.float32), norm)
    sar = store.read("sar", i)[0]
    assert np.array_equal(sar[valid], expected[valid]) and (sar[~valid] == 0).all()
    assert store.attrs["geosynth:normalisation"]["sar"]["rule"] == norm.rule
    present = dict(zip(store.modalities, store.present()[store.index("361_5700")], strict=True))
    assert present == {"rgb": True, "dem": True, "seg": True, "sar": False}
    assert "below the minimum 0.7" in report.skipped["361_5700"]["sar"]
    assert report.skipped["362_5700"] == {"sar": "no _sar.tif for this tile"}
    assert verify(store) == []
    with pytest.raises(DataError, match="no readable <E>_<N>_sar.tif"):
        import_geonrw(_no_sar_copy(root, tmp_path), tmp_path / "x.zarr", with_sar=True)


def _no_sar_copy(root, tmp_path):
    import shutil

    copy_root = tmp_path / "nosar"
    shutil.copytree(root, copy_root)
    for path in copy_root.rglob("*_sar.tif"):
        path.unlink()
    return copy_root


def test_resume_after_interruption(layout, tmp_path):
    out = tmp_path / "g.zarr"
    seen = []

    def interrupt_after_two(record):
        seen.append(record["tile"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        import_geonrw(layout, out, progress=interrupt_after_two)
    store = open_store(out, mode="r+")
    assert sorted(store.tile_ids[i] for i in store.tiles()) == sorted(seen)
    saved = json.loads((tmp_path / "g.zarr.report.json").read_text())
    assert saved["done"] == sorted(seen)  # the report is written on interruption too
    # a tile killed while being written counts as not done
    store.group["state"][store.index(seen[1])] = WRITING
    report = import_geonrw(layout, out)
    assert report.already_complete == [seen[0]]
    assert report.done == sorted(set(store.tile_ids) - {seen[0]})
    assert verify(open_store(out)) == []
    # a rerun with everything complete writes nothing
    assert import_geonrw(layout, out).done == []
    # the store cannot take SAR it was not planned with
    with rasterio.open(layout / "koeln" / "356_5645_dem.tif") as src:
        profile = src.profile
    with rasterio.open(layout / "koeln" / "356_5645_sar.tif", "w", **profile) as dst:
        dst.write(np.full((1, SIZE, SIZE), 50, dtype=np.float32))
    with pytest.raises(UsageError, match="no array for sar; import into a new store"):
        import_geonrw(layout, out, with_sar=True)


# --------------------------------------------------------------------------- the command


def test_cli_workers_report_and_exit_codes(layout, tmp_path):
    runner = CliRunner()
    out = tmp_path / "g.zarr"
    report = tmp_path / "r.json"
    result = runner.invoke(
        cli,
        ["-q", "import-geonrw", str(layout), "--out", str(out), "--workers", "2",
         "--report", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "4 tile(s) imported" in result.output
    assert sorted(json.loads(report.read_text())["done"]) == sorted(open_store(out).tile_ids)
    assert runner.invoke(cli, ["-q", "verify", str(out)]).exit_code == 0
    result = runner.invoke(cli, ["import-geonrw", "--out", str(tmp_path / "x.zarr")])
    assert result.exit_code == 2 and "give ROOT" in result.output
    result = runner.invoke(cli, ["import-geonrw", str(layout), "--out", "x", "--assign", "wesel"])
    assert result.exit_code == 2 and "CITY=train" in result.output
    result = runner.invoke(cli, ["import-geonrw", str(tmp_path / "nope"), "--out", "x.zarr"])
    assert result.exit_code == 1 and "does not exist" in result.output
    # a failed tile: exit 1, the rest imported
    with rasterio.open(layout / "herne" / "380_5710_seg.tif", "r+") as dst:
        dst.write(np.full((1, SIZE, SIZE), 99, dtype=np.uint8))
    result = runner.invoke(cli, ["-q", "import-geonrw", str(layout), "--out", str(tmp_path / "f")])
    assert result.exit_code == 1 and "FAILED 380_5710" in result.output


@pytest.fixture
def published(tmp_path, layout):
    """The layout packed as the published archive, and a catalog pointing at a loopback URL."""
    www = tmp_path / "www"
    www.mkdir()
    archive = www / "nrw_dataset.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(layout, arcname="nrw_dataset")

    def catalog_for(base_url, md5=None):
        data = copy.deepcopy(yaml.safe_load(default_catalog_path().read_text()))
        data["published"]["geonrw"]["url"] = f"{base_url}/nrw_dataset.tar.gz"
        data["published"]["geonrw"]["md5"] = md5 or hashlib.md5(archive.read_bytes()).hexdigest()
        # a new file name per catalog: load_catalog caches the default catalog by path
        path = tmp_path / f"catalog-{md5 or 'published'}.yaml"
        path.write_text(yaml.safe_dump(data))
        parse_catalog(data)
        return path

    return www, catalog_for


def test_download_then_import(published, tmp_path, monkeypatch, http_serve):
    www, catalog_for = published
    runner = CliRunner()
    with http_serve(www, drop_after={"/nrw_dataset.tar.gz": 2000}) as srv:
        monkeypatch.setenv("GEOSYNTH_CATALOG", str(catalog_for(srv.url)))
        args = ["-q", "import-geonrw", str(tmp_path / "dl"), "--download"]
        result = runner.invoke(cli, [*args, "--out", str(tmp_path / "g.zarr")])
        assert result.exit_code == 0, result.output
        store = open_store(tmp_path / "g.zarr")
        assert sorted(store.tile_ids) == ["356_5645", "357_5645", "358_5645", "380_5710"]
        assert (tmp_path / "dl" / "nrw_dataset" / "nrw_dataset" / "koeln").is_dir()
        assert verify(store) == []
        n_requests = len(srv.requests)
        # the archive is reused: a second import downloads nothing
        result = runner.invoke(cli, [*args, "--out", str(tmp_path / "h.zarr")])
        assert result.exit_code == 0, result.output
        assert len(srv.requests) == n_requests
        # a wrong checksum: exit 1, no archive and no store left behind
        monkeypatch.setenv("GEOSYNTH_CATALOG", str(catalog_for(srv.url, md5="0" * 32)))
        result = runner.invoke(
            cli,
            ["-q", "import-geonrw", str(tmp_path / "dl2"), "--download", "--out",
             str(tmp_path / "bad.zarr")],
        )  # fmt: skip
    assert result.exit_code == 1 and "md5 checksum mismatch" in result.output
    assert not (tmp_path / "bad.zarr").exists()
    assert not list((tmp_path / "dl2").glob("nrw_dataset*"))
