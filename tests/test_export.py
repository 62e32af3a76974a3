"""geosynth export: COGs that GDAL's layout check accepts, a STAC catalog whose assets open,
and every other raster the project writes is a COG too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.grid import RasterGrid
from geosynth.sources import StageResult
from geosynth.sources.landcover import write_class_map
from geosynth.store import TileData, TilePlan, create_store, modality, open_store

H = W = 300
TILES = ["356_5645", "357_5645", "358_5645"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "s.zarr"
    plans = [
        TilePlan(
            t, "demo", "train", Affine(1000 / W, 0, 356_000 + 1000 * k, 0, -1000 / H, 5_646_000)
        )
        for k, t in enumerate(TILES[:2])
    ] + [TilePlan(TILES[2], "demo", "test")]  # no georeferencing
    store = create_store(
        path, plans, tile_shape=(H, W), dataset="demo", crs="EPSG:25832",
        modalities=[modality("rgb"), modality("dem"), modality("seg"),
                    modality("sar", channels=1, bands=("HH",))],
        classes=load_catalog().classes,
    )  # fmt: skip
    rng = np.random.default_rng(5)
    for t in TILES:
        dem = rng.normal(60, 4, (1, H, W)).astype("float32")
        dem[0, :10, :10] = np.nan
        valid = np.ones((H, W), bool)
        valid[:, :7] = False
        store.write_tile(t, TileData(
            rgb=rng.integers(0, 256, (3, H, W), dtype=np.uint8), dem=dem,
            seg=rng.integers(0, 11, (H, W), dtype=np.uint8),
            sar=rng.random((1, H, W), dtype=np.float32), sar_valid=valid,
        ))  # fmt: skip
    return path


def test_export_writes_valid_cogs_and_a_stac_catalog(store_path, tmp_path):
    out = tmp_path / "export"
    result = CliRunner().invoke(cli, ["-q", "export", str(store_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "skipped 358_5645: no georeferencing" in result.output
    store = open_store(store_path)
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    items = {item.id: item for item in catalog.get_items(recursive=True)}
    assert sorted(items) == TILES[:2]
    for tile, item in items.items():
        i = store.index(tile)
        assert item.properties["proj:code"] == "EPSG:25832"
        assert item.properties["proj:transform"] == pytest.approx(list(store.transform(i))[:6])
        assert item.properties["proj:shape"] == [H, W]
        assert set(item.assets) == {"rgb", "dem", "seg", "sar"}
        for name, asset in item.assets.items():
            href = Path(asset.get_absolute_href())
            assert not Path(asset.href).is_absolute() and href.is_file()
            valid, errors, _ = cog_validate(str(href))
            assert valid, (href, errors)
            with rasterio.open(href) as src:
                assert src.crs.to_epsg() == 25832 and src.transform == store.transform(i)
                assert not any(v.startswith("/") for v in src.tags().values())
                np.testing.assert_array_equal(src.read().squeeze(), store.read(name, i).squeeze())
                if name == "rgb":
                    assert src.descriptions == ("red", "green", "blue") and src.nodata is None
                elif name == "dem":
                    assert np.isnan(src.nodata)
                elif name == "seg":
                    assert src.nodata == 0
                    buildings = store.classes.by_key("buildings")
                    assert src.colormap(1)[buildings.id][:3] == buildings.rgb
                elif name == "sar":
                    assert src.nodata is None and src.descriptions == ("HH",)
                    np.testing.assert_array_equal(
                        src.dataset_mask() > 0, store.read("sar_valid", i)
                    )
        seg = Path(item.assets["seg"].get_absolute_href())
        aux = seg.with_name(seg.name + ".aux.xml").read_text()
        assert "<Category>unlabelled</Category>" in aux and "buildings" in aux.lower()
        classes = item.assets["seg"].extra_fields["classification:classes"]
        assert [c["value"] for c in classes] == list(range(11))
    stac = json.loads((out / TILES[0] / f"{TILES[0]}.json").read_text())
    assert any("projection" in e for e in stac["stac_extensions"])


def test_export_refuses_unknown_modalities(store_path, tmp_path):
    result = CliRunner().invoke(
        cli, ["export", str(store_path), "--out", str(tmp_path / "x"), "--modalities", "lidar"]
    )
    assert result.exit_code == 2 and "no lidar" in result.output


def test_stage_outputs_are_cogs_with_nodata_and_colours(tmp_path):
    classes = load_catalog().classes
    grid = RasterGrid("EPSG:25832", Affine(1, 0, 356_000, 0, -1, 5_646_000), 600, 600)
    seg = np.random.default_rng(0).integers(0, 11, (600, 600)).astype(np.uint8)
    path = write_class_map(tmp_path / "seg.tif", StageResult(seg, grid), classes)
    valid, errors, _ = cog_validate(str(path))
    assert valid, errors
    with rasterio.open(path) as src:
        assert (
            src.nodata == 0
            and src.colormap(1)[classes.id_of("water")][:3] == classes.by_key("water").rgb
        )
        assert src.overviews(1)  # a COG with overviews, not a plain GeoTIFF
