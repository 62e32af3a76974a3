"""export --layout geonrw: the published GeoNRW folder, read back by readers that never
import geosynth (PIL as the authors' loaders read, rasterio, torchgeo's GeoNRW)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image
from test_import_geonrw import _read, write_tile

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.export.geonrw import city_folder, export_geonrw, partial_folder
from geosynth.ingest.geonrw import import_geonrw
from geosynth.store import TileData, TilePlan, create_store, modality, open_store

NRW = "EPSG:25832"


def _run(*args):
    return CliRunner().invoke(cli, ["-q", *map(str, args)])


@pytest.fixture
def published(tmp_path):
    """A GeoNRW-layout folder as the release: koeln (train) 2 tiles, one with SAR; duesseldorf
    (test) 1 tile; rgb lossless, dem float32, seg uint8, sar float32 amplitude."""
    rng = np.random.default_rng(3)
    root = tmp_path / "nrw"
    sar = np.where(rng.random((64, 64)) < 0.05, 0.0, 10 ** (rng.random((64, 64)) * 4 + 0.2))
    write_tile(root / "koeln", "356_5645", rng, sar=sar)
    write_tile(root / "koeln", "357_5645", rng)
    write_tile(root / "duesseldorf", "343_5677", rng)
    return root, sar


def _import(root, tmp_path, with_sar=True):
    store = tmp_path / "imported.zarr"
    import_geonrw(root, store, with_sar=with_sar)
    return open_store(store)


def _pil_sample(folder, stem):
    """How torchgeo's GeoNRW and the authors' loaders read a tile (their readers, written out)."""
    rgb = np.array(Image.open(folder / f"{stem}_rgb.jp2").convert("RGB"))  # (H, W, 3)
    dem = Image.open(folder / f"{stem}_dem.tif").copy()
    seg = np.array(Image.open(folder / f"{stem}_seg.tif").convert("I;16"))
    return rgb, dem, seg


def test_round_trip_gives_back_the_published_files(published, tmp_path):
    root, sar = published
    store = _import(root, tmp_path)
    out = tmp_path / "out"
    result = _run("export", store.path, "--layout", "geonrw", "--out", out,
                  "--jp2-quality", "lossless", "--workers", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    for city, stem in (("koeln", "356_5645"), ("koeln", "357_5645"), ("duesseldorf", "343_5677")):
        source, mine = root / city, out / city
        for kind in ("rgb", "seg"):  # bit for bit
            ext = "jp2" if kind == "rgb" else "tif"
            assert np.array_equal(_read(mine / f"{stem}_{kind}.{ext}"),
                                  _read(source / f"{stem}_{kind}.{ext}"))  # fmt: skip
        assert np.array_equal(_read(mine / f"{stem}_dem.tif"), _read(source / f"{stem}_dem.tif"))
        with (
            rasterio.open(mine / f"{stem}_dem.tif") as dem,
            rasterio.open(mine / f"{stem}_rgb.jp2") as rgb,
            rasterio.open(source / f"{stem}_dem.tif") as src,
        ):
            assert (
                dem.dtypes == ("float32",) and dem.nodata == -9999 and not dem.profile.get("tiled")
            )
            assert (dem.crs, dem.transform) == (src.crs, src.transform)
            assert (rgb.crs, rgb.transform, rgb.driver) == (src.crs, src.transform, "JP2OpenJPEG")
    # SAR: the amplitude back from the stored clip(20 log10(A) / 100, 0, 1)
    back = _read(out / "koeln" / "356_5645_sar.tif")[0].astype(np.float64)
    inside = (sar >= 1) & (sar <= 1e5)  # within the normalisation's clip
    assert np.allclose(back[inside], sar[inside], rtol=2e-5)
    assert (back[sar == 0] == 0).all()  # missing data stays 0 (EEC no-data)
    assert not (out / "koeln" / "357_5645_sar.tif").exists()
    report = json.loads((out / "export.json").read_text())
    assert report["lacking"] == {"357_5645": ["sar"], "343_5677": ["sar"]}
    assert len(report["files"]) == 10 and report["jp2_quality"] == "lossless"
    assert not partial_folder(out).exists()


def test_the_published_jpeg2000_options_lose_within_a_stated_bound(tmp_path):
    """The release's JP2 is lossy (GDAL's QUALITY 25, 4:1): on image-like content (smooth
    fields, edges, sensor noise of 3 grey levels) it comes back at PSNR >= 40 dB and within 2
    grey levels on average (the demo's orthophotos: max 4, 52 dB, benchmarks/export_geonrw.py);
    pure noise, which no 4:1 code keeps, is not image-like."""
    rng = np.random.default_rng(0)
    root = tmp_path / "nrw"
    write_tile(root / "koeln", "356_5645", rng)
    yy, xx = np.mgrid[0:64, 0:64]
    field = 120 + 60 * np.sin(xx / 9) * np.cos(yy / 13) + 40 * (xx > 40)  # fields and an edge
    rgb = np.clip(np.stack([field, field * 0.8 + 20, 255 - field]) + rng.normal(0, 3, (3, 64, 64)),
                  0, 255).astype(np.uint8)  # fmt: skip
    with rasterio.open(root / "koeln" / "356_5645_rgb.jp2", "r+") as dst:
        dst.write(rgb)
    store = _import(root, tmp_path, with_sar=False)
    out = tmp_path / "lossy"
    export_geonrw(store, out)  # default: QUALITY 25
    a = _read(root / "koeln" / "356_5645_rgb.jp2").astype(float)
    b = _read(out / "koeln" / "356_5645_rgb.jp2").astype(float)
    psnr = 10 * np.log10(255**2 / ((a - b) ** 2).mean())
    assert np.abs(a - b).mean() < 2 and psnr >= 40, (np.abs(a - b).mean(), psnr)
    assert (out / "koeln" / "356_5645_rgb.jp2").stat().st_size < a.size / 2  # compressed


def test_readers_that_never_import_geosynth(published, tmp_path):
    """PIL as torchgeo and the authors' loaders read: shapes, metres, classes, the split."""
    root, _ = published
    store = _import(root, tmp_path, with_sar=False)
    out = tmp_path / "out"
    export_geonrw(store, out)
    catalog = load_catalog()
    test_cities = {r.name for r in catalog.cities("test")}
    assert {"duesseldorf", "herne", "neuss"} == test_cities
    seen = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*_rgb.jp2")):
            stem = "_".join(path.name.split("_")[:2])  # torchgeo's utm_coords
            rgb, dem, seg = _pil_sample(folder, stem)
            assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
            assert dem.mode == "F"  # float32 metres: ToTensor keeps them
            assert np.array(dem).min() >= 30 and np.array(dem).max() <= 230
            assert seg.max() <= 10
            seen[stem] = "test" if folder.name in test_cities else "train"
    assert seen == {"356_5645": "train", "357_5645": "train", "343_5677": "test"}
    # every city folder of the release exists (torchgeo checks them before reading)
    assert {r.name for r in catalog.cities()} <= {p.name for p in out.iterdir() if p.is_dir()}


def _torchgeo_geonrw():
    """torchgeo's GeoNRW, or a skip saying why not (not installed, or torchvision's compiled
    ops do not load with this torch build)."""
    try:
        from torchgeo.datasets import GeoNRW
    except ImportError:
        pytest.skip("torchgeo is not installed (pip install geosynth[torchgeo])")
    except Exception as exc:  # e.g. RuntimeError: operator torchvision::nms does not exist
        pytest.skip(f"torchgeo does not import here: {type(exc).__name__}: {exc}")
    return GeoNRW


def test_torchgeo_reads_the_export(published, tmp_path):
    geonrw = _torchgeo_geonrw()
    root, _ = published
    store = _import(root, tmp_path, with_sar=False)
    out = tmp_path / "out"
    export_geonrw(store, out)
    train, test = geonrw(root=str(out), split="train"), geonrw(root=str(out), split="test")
    assert (len(train), len(test)) == (2, 1)
    sample = train[0]
    assert tuple(sample["image"].shape) == (3, 64, 64) and sample["image"].max() <= 255
    assert tuple(sample["mask"].shape) == (64, 64) and int(sample["mask"].max()) <= 10
    dem = sample["dem"]
    assert tuple(dem.shape) == (1, 64, 64) and float(dem.min()) >= 30  # metres, not / 255
    i = store.index("356_5645")
    assert np.array_equal(sample["mask"].numpy(), store.read("seg", i).astype(np.int64))


def test_the_real_samples_round_trip(realdata, tmp_path):
    """../shared/realdata/geonrw_layout (torchgeo's test data: 100 px, no georeferencing,
    names 0_0 in several cities): labels, DEM values and RGB come back; the DEM as float32
    (the samples carry uint8, the release float32)."""
    root = realdata / "geonrw_layout"
    store = tmp_path / "samples.zarr"
    import_geonrw(root, store)
    s = open_store(store)
    out = tmp_path / "out"
    result = _run("export", store, "--layout", "geonrw", "--out", out, "--jp2-quality", "lossless")
    assert result.exit_code == 0, result.output
    for city in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for src in sorted((root / city).glob("*_seg.tif")):
            stem = src.name.removesuffix("_seg.tif")
            mine = out / city
            assert np.array_equal(_read(mine / f"{stem}_seg.tif"), _read(src))
            assert np.array_equal(
                _read(mine / f"{stem}_rgb.jp2"), _read(root / city / f"{stem}_rgb.jp2")
            )
            dem = _read(mine / f"{stem}_dem.tif")
            assert dem.dtype == np.float32
            assert np.array_equal(dem, _read(root / city / f"{stem}_dem.tif").astype(np.float32))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                with rasterio.open(mine / f"{stem}_rgb.jp2") as f:
                    assert f.crs is None  # as published: no georeferencing
    assert len(s.tile_ids) == len(json.loads((out / "export.json").read_text())["tiles"])


def test_tiles_modalities_card_and_the_demo_region(tiny_store, tmp_path):
    out = tmp_path / "out"
    result = _run("export", tiny_store, "--layout", "geonrw", "--out", out,
                  "--tiles", "356_5645,362_5645", "--modalities", "seg,dem")  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (out / "demo").iterdir())
    assert files == ["356_5645_dem.tif", "356_5645_seg.tif", "362_5645_dem.tif", "362_5645_seg.tif"]
    card = (out / "DATASET.md").read_text()
    assert "dl-de/zero-2-0" in card or "Datenlizenz Deutschland" in card
    assert "Open Database License" in card and "9406194" in card
    assert "| demo | test | 1 |" in card and "| demo | train | 1 |" in card
    rows = (out / "tiles.csv").read_text().splitlines()
    assert rows[0].startswith("tile,folder,region,split") and len(rows) == 3


def test_the_stac_export_writes_the_card_too(published, tmp_path):
    store = _import(published[0], tmp_path, with_sar=False)
    result = _run("export", store.path, "--out", tmp_path / "stac", "--tiles", "356_5645")
    assert result.exit_code == 0, result.output
    card = (tmp_path / "stac" / "DATASET.md").read_text()
    assert "STAC catalog" in card and "| koeln | train | 1 |" in card
    assert (tmp_path / "stac" / "tiles.csv").read_text().count("\n") == 2


def test_a_stac_export_of_nothing_fails(tiny_store, tmp_path):
    """The tiny store's tiles carry no transform: nothing exported is a data error, exit 1."""
    result = _run("export", tiny_store, "--out", tmp_path / "stac", "--tiles", "356_5645")
    assert result.exit_code == 1 and "no tile to export (no georeferencing)" in result.output


def _store_with_regions(path, regions, tile_ids=None, georef=True):
    classes = load_catalog().classes
    tile_ids = tile_ids or [f"{356 + i}_5645" for i in range(len(regions))]
    plans = [TilePlan(t, r, "train") for t, r in zip(tile_ids, regions, strict=True)]
    store = create_store(path, plans, tile_shape=(16, 16),
                         modalities=[modality("seg")], dataset="test",
                         crs=NRW if georef else "", classes=classes)  # fmt: skip
    for plan in plans:
        store.write_tile(plan.tile_id, TileData(seg=np.ones((16, 16), np.uint8)))
    return path


def test_bad_input_one_line_and_nothing_written(tiny_store_factory, tmp_path):
    no_labels = tiny_store_factory(tmp_path / "nolabels.zarr", modalities=("rgb", "dem"))
    result = _run("export", no_labels, "--layout", "geonrw", "--out", tmp_path / "a")
    assert result.exit_code == 1 and "has no seg" in result.output
    assert not (tmp_path / "a").exists() and not partial_folder(tmp_path / "a").exists()

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    tiny = tiny_store_factory(tmp_path / "t.zarr")
    result = _run("export", tiny, "--layout", "geonrw", "--out", busy)
    assert result.exit_code == 2 and "not an empty folder" in result.output
    assert sorted(p.name for p in busy.iterdir()) == ["mine.txt"]

    clash = _store_with_regions(tmp_path / "clash.zarr", ["koeln", "Köln"])
    result = _run("export", clash, "--layout", "geonrw", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "share the city folder 'koeln'" in result.output
    assert not partial_folder(tmp_path / "b").exists()

    unnamed = _store_with_regions(tmp_path / "unnamed.zarr", ["demo"], ["patch_1"], georef=False)
    result = _run("export", unnamed, "--layout", "geonrw", "--out", tmp_path / "c")
    assert result.exit_code == 1 and "tile patch_1" in result.output and "no CRS" in result.output

    result = _run(
        "export", tiny, "--layout", "geonrw", "--out", tmp_path / "d", "--jp2-quality", "0"
    )
    assert result.exit_code == 2
    result = _run("export", tiny, "--out", tmp_path / "e", "--jp2-quality", "50")
    assert result.exit_code == 2 and "applies to --layout geonrw" in result.output


def test_an_interrupted_export_resumes_keeping_its_files(tiny_store, tmp_path):
    out = tmp_path / "out"
    partial = partial_folder(out) / "demo"
    partial.mkdir(parents=True)
    kept = partial / "356_5645_seg.tif"
    kept.write_bytes(b"written by the run that was interrupted")  # a file counts once renamed
    export_geonrw(open_store(tiny_store), out, modalities=["seg"])
    assert kept.exists() is False and (out / "demo" / "356_5645_seg.tif").read_bytes().startswith(
        b"written by"
    )  # fmt: skip
    assert len(list((out / "demo").glob("*_seg.tif"))) == 7


@pytest.mark.parametrize("region, folder", [("koeln", "koeln"), ("cologne", "koeln"),
                                            ("Mülheim an der Ruhr", "muelheim"),
                                            ("bergisch-gladbach", "bergisch"), ("demo", "demo")])  # fmt: skip
def test_city_folders_as_the_release_spells_them(region, folder):
    assert city_folder(region, load_catalog()) == folder
