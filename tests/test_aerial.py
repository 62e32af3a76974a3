"""The aerial stage on JPEG2000 and GeoTIFF files written here, zips of them and real samples.

Values are checked against a direct ``rasterio.warp.reproject`` (lanczos) of
the same file onto the same grid.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.warp import Resampling, reproject

from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.sources.aerial import aerial_stage, write_aerial_geotiff

UTM32 = "EPSG:25832"


def write_raster(path, data, left, top, res, crs=UTM32, driver=None):
    """Write (B, H, W) ``data``; JPEG2000 losslessly when the suffix is .jp2."""
    driver = driver or ("JP2OpenJPEG" if str(path).endswith(".jp2") else "GTiff")
    options = {"QUALITY": 100, "REVERSIBLE": "YES"} if driver == "JP2OpenJPEG" else {}
    profile = {
        "driver": driver,
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "transform": Affine(res, 0, left, 0, -res, top),
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile, **options) as dst:
        dst.write(data)
    return path


def image(bands, height, width, seed=0, dtype=np.uint8):
    """A smooth-ish seeded test image (noise on a gradient), (B, H, W)."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(height), np.arange(width)) % 200
    return (ramp[None] + rng.integers(0, 55, (bands, height, width))).astype(dtype)


def direct(path, grid: RasterGrid, bands=(1, 2, 3)) -> np.ndarray:
    """The independent computation: a bare lanczos reproject of ``path`` onto ``grid``."""
    out = np.zeros((len(bands), *grid.shape), np.uint8)
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, list(bands)),
            out,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            resampling=Resampling.lanczos,
        )
    return out


def grid_at(left, top, width, height, res=1.0, crs=UTM32) -> RasterGrid:
    return RasterGrid(crs, Affine(res, 0, left, 0, -res, top), width, height)


@pytest.fixture
def dop(tmp_path):
    """A 0.5 m RGBI JPEG2000 covering 100 m x 60 m at the NW corner of tile 356_5645."""
    return write_raster(
        tmp_path / "dop10rgbi_32_356_5645_1_nw_2024.jp2",
        image(4, 120, 200),
        356000.0,
        5646000.0,
        0.5,
    )


def test_single_jp2_equals_direct_reproject(dop):
    grid = grid_at(356000.0, 5646000.0, 100, 60)
    result = aerial_stage([dop], grid)
    assert result.array.dtype == np.uint8 and result.array.shape == (3, 60, 100)
    np.testing.assert_array_equal(result.array, direct(dop, grid))
    assert result.valid is None and result.report["uncovered_pixels"] == 0
    assert result.report["source_resolution"] == [(0.5, 0.5)]
    assert result.descriptions == ("red", "green", "blue")


def test_nir_band(dop, tmp_path):
    grid = grid_at(356000.0, 5646000.0, 100, 60)
    result = aerial_stage([dop], grid, nir=True)
    assert result.array.shape == (4, 60, 100) and result.descriptions[-1] == "nir"
    np.testing.assert_array_equal(result.array, direct(dop, grid, bands=(1, 2, 3, 4)))
    rgb = write_raster(tmp_path / "rgb.tif", image(3, 20, 20), 356000.0, 5646000.0, 1.0)
    with pytest.raises(DataError, match=r"rgb\.tif: has 3 band"):
        aerial_stage([rgb], grid, nir=True)


def test_mosaic_of_two_halves_takes_each_pixel_from_its_file(tmp_path):
    full = image(3, 80, 160, seed=1)
    west = write_raster(tmp_path / "west.tif", full[:, :, :80], 356000.0, 5646000.0, 0.5)
    east = write_raster(tmp_path / "east.tif", full[:, :, 80:], 356040.0, 5646000.0, 0.5)
    grid = grid_at(356000.0, 5646000.0, 80, 40)
    calls = []
    result = aerial_stage([east, west], grid, progress=lambda *c: calls.append(c))
    assert result.valid is None and calls == [(1, 2), (2, 2)]
    np.testing.assert_array_equal(result.array[:, :, :40], direct(west, grid)[:, :, :40])
    np.testing.assert_array_equal(result.array[:, :, 40:], direct(east, grid)[:, :, 40:])


def test_overlap_first_source_wins(tmp_path):
    a = write_raster(tmp_path / "a.tif", np.full((3, 40, 40), 10, np.uint8), 356000.0, 5646000.0, 1)
    b = write_raster(
        tmp_path / "b.tif", np.full((3, 40, 40), 200, np.uint8), 356020.0, 5646000.0, 1
    )
    grid = grid_at(356000.0, 5646000.0, 60, 40)
    result = aerial_stage([a, b], grid)
    assert (result.array[:, :, :40] == 10).all() and (result.array[:, :, 40:] == 200).all()
    result = aerial_stage([b, a], grid)
    assert (result.array[:, :, :20] == 10).all() and (result.array[:, :, 20:] == 200).all()


def test_zip_and_vsizip_sources(dop, tmp_path):
    archive = tmp_path / "dop_05999000_Demostadt_EPSG25832_JPEG2000.zip"
    far = write_raster(tmp_path / "far.tif", image(3, 10, 10), 400000.0, 5646000.0, 1.0)
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(dop, dop.name)
        zf.write(far, "far.tif")
        zf.writestr("readme.txt", "not a raster")
    grid = grid_at(356000.0, 5646000.0, 100, 60)
    want = direct(dop, grid)
    result = aerial_stage([archive], grid)
    np.testing.assert_array_equal(result.array, want)
    assert result.report["skipped_sources"] == [f"/vsizip/{archive.resolve()}/far.tif"]
    vsi = aerial_stage([f"/vsizip/{archive}/{dop.name}"], grid)
    np.testing.assert_array_equal(vsi.array, want)


def test_source_in_another_crs(tmp_path):
    """A Web Mercator GeoTIFF onto the UTM grid: grid exact, covered pixels equal the direct warp."""
    src = write_raster(
        tmp_path / "merc.tif", image(3, 150, 150, seed=2), 766000.0, 6657000.0, 1.0, crs="EPSG:3857"
    )
    with rasterio.open(src) as ds:
        from rasterio.warp import transform_bounds

        left, bottom, right, top = transform_bounds(ds.crs, UTM32, *ds.bounds)
    grid = grid_at(round(left) + 10, round(top) - 10, 50, 50)
    result = aerial_stage([src], grid)
    assert result.grid == grid and result.array.shape == (3, 50, 50)
    np.testing.assert_array_equal(result.array, direct(src, grid))


def test_partial_coverage_is_masked_not_zero(dop, tmp_path):
    grid = grid_at(355980.0, 5646000.0, 60, 70)  # 20 px west of the source and 10 px south
    result = aerial_stage([dop], grid)
    expected = np.zeros((70, 60), bool)
    expected[:60, 20:] = True
    np.testing.assert_array_equal(result.valid, expected)
    assert result.report["uncovered_pixels"] == int((~expected).sum())
    out = write_aerial_geotiff(tmp_path / "rgb.tif", result)
    with rasterio.open(out) as ds:
        assert ds.nodata is None
        np.testing.assert_array_equal(ds.dataset_mask() > 0, expected)
        np.testing.assert_array_equal(ds.read(), result.array)


@settings(max_examples=12, deadline=None)
@given(
    left=st.integers(356000, 356080),
    top=st.integers(5645940, 5646000),
    width=st.integers(1, 40),
    height=st.integers(1, 40),
    res=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
)
def test_output_has_the_grid_exactly(tmp_path_factory, left, top, width, height, res):
    path = tmp_path_factory.getbasetemp() / "hyp_src.tif"
    if not path.exists():
        write_raster(path, image(3, 240, 240, seed=4), 355990.0, 5646010.0, 0.5)
    grid = grid_at(float(left), float(top), width, height, res)
    result = aerial_stage([path], grid)
    assert result.grid == grid and result.array.shape == (3, height, width)
    np.testing.assert_array_equal(result.array, direct(path, grid))


# --------------------------------------------------------------------------- bad input


def test_truncated_jp2_names_the_file(dop, tmp_path):
    broken = tmp_path / "broken.jp2"
    broken.write_bytes(dop.read_bytes()[: dop.stat().st_size // 2])
    with pytest.raises(DataError, match="broken.jp2"):
        aerial_stage([broken], grid_at(356000.0, 5646000.0, 100, 60))


def test_geotiff_without_crs(tmp_path):
    path = write_raster(tmp_path / "nocrs.tif", image(3, 10, 10), 356000.0, 5646000.0, 1, crs=None)
    with pytest.raises(DataError, match=r"nocrs\.tif: raster has no CRS"):
        aerial_stage([path], grid_at(356000.0, 5646000.0, 10, 10))


def test_source_outside_the_grid_and_wrong_dtype(dop, tmp_path):
    with pytest.raises(DataError, match="intersects the grid.*dop10rgbi"):
        aerial_stage([dop], grid_at(360000.0, 5646000.0, 10, 10))
    deep = write_raster(
        tmp_path / "deep.tif", image(3, 10, 10, dtype=np.uint16), 356000.0, 5646000.0, 1
    )
    with pytest.raises(DataError, match=r"deep\.tif: data type uint16"):
        aerial_stage([deep], grid_at(356000.0, 5646000.0, 10, 10))


def test_real_geonrw_layout_jp2_has_no_georeferencing(realdata):
    path = sorted((realdata / "geonrw_layout").glob("*/*_rgb.jp2"))[0]
    with pytest.raises(DataError, match=f"{path.name}: raster has no CRS"):
        aerial_stage([path], grid_at(356000.0, 5646000.0, 10, 10))


# --------------------------------------------------------------------------- command line


def test_cli_tile_and_like(tmp_path):
    # a 2 m GeoTIFF covering the whole tile 356_5645 and a bit more
    src = write_raster(tmp_path / "ortho.tif", image(3, 510, 510, seed=3), 355990.0, 5646010.0, 2.0)
    out = tmp_path / "rgb.tif"
    result = CliRunner().invoke(
        cli, ["-q", "aerial", str(src), "--tile", "356_5645", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    grid = grid_at(356000.0, 5646000.0, 1000, 1000)
    with rasterio.open(out) as ds:
        assert ds.crs == rasterio.crs.CRS.from_user_input(UTM32)
        assert ds.transform == grid.transform and ds.shape == (1000, 1000) and ds.count == 3
        np.testing.assert_array_equal(ds.read(), direct(src, grid))
    like_out = tmp_path / "rgb_like.tif"
    result = CliRunner().invoke(
        cli, ["-q", "aerial", str(src), "--like", str(out), "--out", str(like_out), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert '"uncovered_pixels": 0' in result.output
    with rasterio.open(out) as a, rasterio.open(like_out) as b:
        assert a.transform == b.transform and a.crs == b.crs
        np.testing.assert_array_equal(a.read(), b.read())


def test_cli_truncated_input_exits_1_and_writes_nothing(dop, tmp_path):
    broken = tmp_path / "broken.jp2"
    broken.write_bytes(dop.read_bytes()[:3000])
    out = tmp_path / "rgb.tif"
    result = CliRunner().invoke(
        cli, ["aerial", str(broken), "--tile", "356_5645", "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "broken.jp2" in result.output
    assert list(tmp_path.glob("*rgb.tif*")) == []


def test_cli_needs_exactly_one_grid_option(dop, tmp_path):
    result = CliRunner().invoke(cli, ["aerial", str(dop), "--out", str(tmp_path / "x.tif")])
    assert result.exit_code == 2 and "--tile" in result.output


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # our own writer
def test_raster_with_crs_but_no_geotransform(tmp_path):
    path = tmp_path / "plain.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8", crs=UTM32
    ) as dst:
        dst.write(image(3, 8, 8))
    with pytest.raises(DataError, match=r"plain\.tif: raster has no geotransform"):
        aerial_stage([path], grid_at(356000.0, 5646000.0, 10, 10))


# --------------------------------------------------------------------------- demo world


def test_demo_tile_from_the_dop_zip(one_tile_world, tmp_path):
    """The demo DOP zipped as a 2020 package, on its tile: the lossless 1 m JPEG2000's own
    pixels, RGB and NIR."""
    from geosynth.demo import read_manifest, tile_file

    manifest = read_manifest(one_tile_world)
    jp2 = Path(tile_file(one_tile_world, manifest, manifest["tiles"][0], "dop"))
    archive = tmp_path / "dop_05999000_Demostadt_EPSG25832_JPEG2000.zip"
    member = jp2.name
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(jp2, member)
    grid = grid_at(356000.0, 5646000.0, 1000, 1000)
    result = aerial_stage([archive], grid, nir=True)
    path = f"/vsizip/{archive}/{member}"
    with rasterio.open(path) as src:
        assert src.res == (1.0, 1.0)
        np.testing.assert_array_equal(result.array, src.read())
    np.testing.assert_array_equal(result.array[:3], direct(path, grid))
    out = tmp_path / "rgb.tif"
    cli_result = CliRunner().invoke(
        cli, ["-q", "aerial", str(archive), "--tile", "356_5645", "--out", str(out)]
    )
    assert cli_result.exit_code == 0, cli_result.output
    with rasterio.open(out) as ds:
        assert ds.transform == grid.transform and ds.count == 3
        np.testing.assert_array_equal(ds.read(), result.array[:3])


# --------------------------------------------------------------------------- reduced resolution


def test_decode_level_reads_jpeg2000s_reduced_resolution(tmp_path):
    """NRW's 0.1 m orthophoto onto 1 m: --decode-level auto reads the 0.4 m level (two of its
    pixels per output pixel), a fraction of the full image, and stays close to it."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    smooth = gaussian_filter(rng.normal(0, 1, (4, 1200, 1600)), (0, 12, 12))
    data = np.clip(128 + 400 * smooth + rng.normal(0, 4, smooth.shape), 0, 255).astype(np.uint8)
    jp2 = write_raster(tmp_path / "dop.jp2", data, 356000.0, 5646000.0, 0.1)
    grid = grid_at(356000.0, 5646000.0, 160, 120)
    full = aerial_stage([jp2], grid, nir=True)
    auto = aerial_stage([jp2], grid, nir=True, decode_level="auto")
    assert full.report["decode_level"] == [0] and auto.report["decode_level"] == [2]
    diff = np.abs(full.array.astype(int) - auto.array)
    psnr = 10 * np.log10(255**2 / np.mean(diff.astype(float) ** 2))
    assert psnr > 35 and diff.max() < 40
    # an explicit level beyond the file's is its coarsest; a GeoTIFF has no level to read
    assert aerial_stage([jp2], grid, decode_level=20).report["decode_level"] == [
        len(rasterio.open(jp2).overviews(1))
    ]
    tif = write_raster(tmp_path / "dop.tif", data[:3], 356000.0, 5646000.0, 0.1)
    plain = aerial_stage([tif], grid, decode_level="auto")
    assert plain.report["decode_level"] == [0]
    with pytest.raises(UsageError, match="--decode-level"):
        aerial_stage([jp2], grid, decode_level=-1)
    run = CliRunner().invoke(cli, ["aerial", str(jp2), "--like", str(tif), "--decode-level",
                                   "fast", "--out", str(tmp_path / "o.tif")])  # fmt: skip
    assert run.exit_code == 2 and "--decode-level" in run.output
