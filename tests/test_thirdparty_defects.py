"""The aerial and dem stages on files as other tools write them, each made here.

One section per defect found running the stages on third-party files: RGBA
alpha, a global EPSG:4326 raster, SRTM ``.hgt`` and other GDAL formats in
zips, an empty WKT record, GeoTIFF keys laspy cannot read, return number 0,
a geocentric header CRS, and the PDAL-like ``radius`` gridding. Values are
checked against an independent computation (a bare ``reproject``, a plain
numpy gridding) of the same file.
"""

from __future__ import annotations

import zipfile

import laspy
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from laspy.vlrs.known import (
    GeoAsciiParamsVlr,
    GeoKeyDirectoryVlr,
    GeoKeyEntryStruct,
    WktCoordinateSystemVlr,
)
from pyproj import CRS
from rasterio.warp import Resampling, reproject, transform_bounds

from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.sources.aerial import aerial_stage, expand_sources
from geosynth.sources.lidar import PointGridder, dem_stage

UTM32 = "EPSG:25832"
LEFT, TOP = 356000.0, 5646000.0  # north-west corner of tile 356_5645


def grid_at(left=LEFT, top=TOP, width=40, height=30, res=1.0, crs=UTM32) -> RasterGrid:
    return RasterGrid(crs, Affine(res, 0, left, 0, -res, top), width, height)


# --------------------------------------------------------------------------- rasters


def write_raster(path, data, left, top, res, crs=UTM32, driver="GTiff", **options):
    """Write (B, H, W) ``data`` with GDAL; ``options`` are creation options (e.g. ALPHA)."""
    with rasterio.open(
        path,
        "w",
        driver=driver,
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype.name,
        crs=crs,
        transform=Affine(res, 0, left, 0, -res, top),
        **options,
    ) as dst:
        dst.write(data)
    return path


def image(bands, height, width, seed=0):
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(height), np.arange(width)) % 200
    return (ramp[None] + rng.integers(0, 55, (bands, height, width))).astype(np.uint8)


def direct(path, grid: RasterGrid, bands=(1, 2, 3), src_alpha=0) -> np.ndarray:
    """A bare lanczos reproject of ``path`` onto ``grid`` (no alpha unless asked for)."""
    out = np.zeros((len(bands) + 1, *grid.shape), np.uint8)  # (B + 1, H, W), alpha last
    with rasterio.open(path) as src:
        reproject(
            rasterio.band(src, list(bands)),
            out,
            dst_transform=grid.transform,
            dst_crs=grid.crs,
            src_alpha=src_alpha,
            dst_alpha=len(bands) + 1,
            resampling=Resampling.lanczos,
        )
    return out[:-1]


# 1. alpha ------------------------------------------------------------------------------


@pytest.fixture
def rgba(tmp_path):
    """A 0.5 m RGBA GeoTIFF (GDAL ALPHA=YES), 40 m x 30 m; its western 15 m are transparent.

    The transparent pixels hold bright colour, so a warp that ignores the
    alpha band gives valid, non-black pixels there.
    """
    data = np.concatenate([image(3, 60, 80, seed=1) // 4, np.full((1, 60, 80), 255, np.uint8)])
    data[:3, :, :30] = 250  # dark imagery (0..63), a bright transparent part
    data[3, :, :30] = 0
    path = write_raster(tmp_path / "rgba.tif", data, LEFT, TOP, 0.5, ALPHA="YES")
    east = write_raster(tmp_path / "east.tif", data[:3, :, 30:], LEFT + 15, TOP, 0.5)
    return path, east


def test_rgba_transparent_pixels_are_uncovered_like_pixels_outside(rgba):
    path, east = rgba
    with rasterio.open(path) as src:
        assert src.colorinterp[3] == rasterio.enums.ColorInterp.alpha
    grid = grid_at(width=40, height=30)
    result = aerial_stage([path], grid)
    # the same pixels cut out of the file, so that the transparent part lies outside it
    cut = aerial_stage([east], grid)
    expected = np.zeros(grid.shape, bool)
    expected[:, 15:] = True
    np.testing.assert_array_equal(cut.valid, expected)
    np.testing.assert_array_equal(result.valid, expected)
    assert result.report["uncovered_pixels"] == 15 * 30
    assert (result.array[:, ~expected] == 0).all()
    # beyond the lanczos reach (3 px) of the transparent part: the plain warp's pixels
    ignoring_alpha = direct(path, grid)
    np.testing.assert_array_equal(result.array[:, :, 18:], ignoring_alpha[:, :, 18:])
    # within it the kernel leaves the transparent (bright) pixels out, as GDAL's src_alpha does
    np.testing.assert_array_equal(result.array, direct(path, grid, src_alpha=4))
    assert (result.array[:, :, 15] != ignoring_alpha[:, :, 15]).mean() > 0.9


def test_transparent_pixels_of_the_first_source_let_the_next_one_show(rgba, tmp_path):
    path, _ = rgba
    under = write_raster(tmp_path / "under.tif", np.full((3, 30, 40), 7, np.uint8), LEFT, TOP, 1)
    result = aerial_stage([path, under], grid_at(width=40, height=30))
    assert result.valid is None
    assert (result.array[:, :, :15] == 7).all()
    assert (result.array[:, :, 16:] != 7).any()


def test_alpha_band_is_not_taken_for_nir(rgba):
    path, _ = rgba
    with pytest.raises(DataError, match=r"rgba\.tif: band 4 is an alpha band, not near infrared"):
        aerial_stage([path], grid_at(), nir=True)


# 2. bounds that do not transform ----------------------------------------------------


def test_global_wgs84_raster_covers_an_nrw_tile(tmp_path):
    """-180..180 x -90..90 in EPSG:4326 onto tile 356_5645: every pixel covered, as a plain warp."""
    data = image(3, 720, 1440, seed=5)  # 0.25 degree pixels
    path = write_raster(tmp_path / "world.tif", data, -180.0, 90.0, 0.25, crs="EPSG:4326")
    grid = grid_at(width=100, height=100, res=10.0)  # the 1 km tile at 10 m
    # the premise: the world's bounds in UTM miss the tile (they give x 500 km..1500 km)
    left, bottom, right, top = transform_bounds("EPSG:4326", UTM32, -180, -90, 180, 90)
    assert not (left < grid.bounds[2] and grid.bounds[0] < right)
    result = aerial_stage([path], grid)
    assert result.valid is None and result.report["uncovered_pixels"] == 0
    np.testing.assert_array_equal(result.array, direct(path, grid))
    assert result.report["source_crs"] == ["EPSG:4326"]


def test_raster_on_the_far_side_of_the_world_is_still_refused(tmp_path):
    path = write_raster(
        tmp_path / "pacific.tif", image(3, 720, 40, seed=6), -180.0, 90.0, 0.25, crs="EPSG:4326"
    )
    with pytest.raises(DataError, match=r"intersects the grid.*pacific\.tif"):
        aerial_stage([path], grid_at())


# 7. GDAL formats in zips --------------------------------------------------------------


def write_srtm_hgt(path):
    """A 3 arc-second SRTM tile N50E006 written by GDAL's SRTMHGT driver (via a GeoTIFF)."""
    n = 1201
    heights = (np.add.outer(np.arange(n), np.arange(n)) % 500).astype(np.int16)[None]
    step = 1 / 1200
    tif = write_raster(
        path.with_suffix(".tif"), heights, 6 - step / 2, 51 + step / 2, step, crs="EPSG:4326"
    )
    rasterio.shutil.copy(tif, path, driver="SRTMHGT")
    return path, heights


def test_srtm_hgt_in_a_zip_is_found_and_opened(tmp_path):
    hgt, heights = write_srtm_hgt(tmp_path / "N50E006.hgt")
    archive = tmp_path / "srtm.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(hgt, "N50E006.hgt")
        zf.writestr("N50E006.hgt.aux.xml", "<PAMDataset></PAMDataset>")  # a GDAL sidecar
        zf.writestr("readme.pdf", "%PDF-1.4 not a raster")
    member = f"/vsizip/{archive.resolve()}/N50E006.hgt"
    assert expand_sources([archive]) == [member]
    with rasterio.open(member) as src:
        assert src.driver == "SRTMHGT" and src.crs == rasterio.crs.CRS.from_epsg(4326)
        np.testing.assert_array_equal(src.read(), heights)
    # the aerial stage opens it and says why it cannot use it (one band of heights)
    with pytest.raises(DataError, match=r"N50E006\.hgt: has 1 band\(s\), RGB needs 3"):
        aerial_stage([archive], grid_at())
    # as a DEM input (synthesize / edit-flood --dem): the heights, on the SRTM grid
    from geosynth.catalog import load_catalog
    from geosynth.edit.tile import from_files

    inputs = from_files(load_catalog().classes, dem=archive)
    np.testing.assert_array_equal(inputs.arrays["dem"][0], heights[0].astype(np.float32))
    assert inputs.grid.crs == "EPSG:4326" and inputs.grid.width == 1201
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.write(hgt, "N50E006.hgt")
        zf.write(hgt, "N50E007.hgt")
    with pytest.raises(DataError, match="holds 2 rasters"):
        from_files(load_catalog().classes, dem=two)


def test_rgb_mrf_in_a_zip_is_mosaicked(tmp_path):
    """A GDAL MRF (index, data and .aux.xml files), a suffix outside RASTER_SUFFIXES."""
    folder = tmp_path / "mrf"
    folder.mkdir()
    write_raster(folder / "ortho.mrf", image(3, 60, 80, seed=7), LEFT, TOP, 0.5, driver="MRF")
    archive = tmp_path / "ortho.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, file.name)
        names = zf.namelist()
    assert any(n.endswith(".aux.xml") for n in names) and len(names) >= 3
    member = f"/vsizip/{archive.resolve()}/ortho.mrf"
    assert expand_sources([archive]) == [member]
    grid = grid_at(width=40, height=30)
    result = aerial_stage([archive], grid)
    assert result.valid is None and result.report["sources"] == [member]
    np.testing.assert_array_equal(result.array, direct(member, grid))


def test_zip_without_a_raster_names_what_gdal_cannot_read(tmp_path):
    archive = tmp_path / "docs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.pdf", "%PDF-1.4 not a raster")
        zf.writestr("notes.txt", "hello")
    with pytest.raises(DataError, match=r"docs\.zip: zip archive holds no raster.*readme\.pdf"):
        aerial_stage([archive], grid_at())


# --------------------------------------------------------------------------- lidar


def points(n, grid: RasterGrid, seed=0, margin=3.0):
    """Seeded points on a 0.25 m lattice around ``grid``, heights 50..80 m, all first returns."""
    rng = np.random.default_rng(seed)
    left, bottom, right, top = grid.bounds
    x = left - margin + rng.integers(0, int((right - left + 2 * margin) * 4), n) / 4
    y = bottom - margin + rng.integers(0, int((top - bottom + 2 * margin) * 4), n) / 4
    return x, y, np.round(50 + rng.random(n) * 30, 2)


def write_las(path, x, y, z, *, rnum=None, nret=None, crs=UTM32, version="1.2", vlrs=()):
    """A LAS file by laspy: 1.2 / format 1 (GeoTIFF keys) or 1.4 / format 6 (WKT)."""
    header = laspy.LasHeader(point_format=1 if version == "1.2" else 6, version=version)
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([np.floor(np.min(x)), np.floor(np.min(y)), 0.0])
    if crs is not None:
        header.add_crs(CRS.from_user_input(crs))
    for vlr in vlrs:
        header.vlrs.append(vlr)
    las = laspy.LasData(header)
    las.x, las.y, las.z = x, y, z
    ones = np.ones(len(x), np.uint8)
    las.return_number = ones if rnum is None else np.asarray(rnum, np.uint8)
    las.number_of_returns = ones if nret is None else np.asarray(nret, np.uint8)
    las.write(path)
    return path


def stored(path):
    """The coordinates as stored (scaled integers), for the reference gridding."""
    las = laspy.read(path)
    return np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)


def per_cell_mean(x, y, z, grid: RasterGrid) -> np.ndarray:
    """Plain numpy mean per cell, cells closed on their west and south edges."""
    left, bottom, _, _ = grid.bounds
    res_x, res_y = grid.resolution
    col = np.floor((x - left) / res_x).astype(np.int64)
    from_south = np.floor((y - bottom) / res_y).astype(np.int64)
    ok = (col >= 0) & (col < grid.width) & (from_south >= 0) & (from_south < grid.height)
    row = grid.height - 1 - from_south[ok]
    counts, sums = np.zeros(grid.shape), np.zeros(grid.shape)
    np.add.at(counts, (row, col[ok]), 1)
    np.add.at(sums, (row, col[ok]), z[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def within_radius(x, y, z, grid: RasterGrid, radius, stat="mean"):
    """Brute force: every point against every cell centre, kept when closer than ``radius``."""
    left, bottom, _, _ = grid.bounds
    res_x, res_y = grid.resolution
    cx = left + (np.arange(grid.width) + 0.5) * res_x  # (W,) as the kernel computes them
    cy = bottom + (np.arange(grid.height)[::-1] + 0.5) * res_y  # (H,) row 0 at the north
    dx = cx[None, None, :] - x[:, None, None]  # (N, 1, W)
    dy = cy[None, :, None] - y[:, None, None]  # (N, H, 1)
    near = np.sqrt(dx * dx + dy * dy) < radius  # (N, H, W)
    counts = near.sum(axis=0)
    zz = z[:, None, None]
    if stat == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(near, zz, 0.0).sum(axis=0) / counts
    elif stat == "max":
        values = np.where(near, zz, -np.inf).max(axis=0)
    else:
        values = np.where(near, zz, np.inf).min(axis=0)
    return np.where(counts > 0, values, np.nan), counts, int(near.any(axis=(1, 2)).sum())


@pytest.fixture
def laz(tmp_path):
    grid = grid_at()
    x, y, z = points(3000, grid)
    return write_las(tmp_path / "pts.laz", x, y, z), grid


# 3. empty WKT -----------------------------------------------------------------------


@pytest.mark.parametrize("wkt", ["", " ", "\n\x00"], ids=["empty", "blank", "newline-nul"])
def test_empty_wkt_record_takes_the_default_crs(tmp_path, wkt):
    grid = grid_at()
    x, y, z = points(800, grid)
    path = write_las(
        tmp_path / "wkt.las", x, y, z, crs=None, version="1.4", vlrs=[WktCoordinateSystemVlr(wkt)]
    )
    header = laspy.read(path).header
    assert header.vlrs.get("WktCoordinateSystemVlr")
    result = dem_stage([path], grid, default_crs=UTM32, fill_distance=0)
    np.testing.assert_allclose(result.array[0], per_cell_mean(*stored(path), grid), rtol=1e-6)
    (warning,) = result.report["warnings"]
    assert warning == f"{path}: no CRS in the header (its WKT record is empty); assuming {UTM32}"
    assert result.report["files"][0]["crs_source"] == "default"
    out = tmp_path / "dem.tif"
    cli_result = CliRunner().invoke(
        cli,
        ["-q", "dem", str(path), "--tile", "356_5645", "--default-crs", UTM32, "--out", str(out)],
    )
    assert cli_result.exit_code == 0, cli_result.output


# 4. GeoTIFF keys that do not read -----------------------------------------------------

CITATION = "custom UTM on ETRS89|"


def geokeys(*keys, citation=False) -> list:
    """LASF_Projection records: a GeoKeyDirectory of (id, location, count, value) keys."""
    directory = GeoKeyDirectoryVlr()
    directory.geo_keys = [GeoKeyEntryStruct(*k) for k in keys]
    records = [directory]
    if citation:
        ascii_params = GeoAsciiParamsVlr()
        ascii_params.strings = [CITATION]
        directory.geo_keys.append(GeoKeyEntryStruct(1026, 34737, len(CITATION), 0))
        records.append(ascii_params)
    directory.geo_keys_header.number_of_keys = len(directory.geo_keys)
    return records


UNREADABLE_KEYS = {
    "user-defined": (
        geokeys((1024, 0, 1, 1), (3072, 0, 1, 32767), (3076, 0, 1, 9001), citation=True),
        r"ProjectedCSTypeGeoKey=32767 \(user-defined\).*GTCitationGeoKey='custom UTM on ETRS89'",
    ),
    "unknown-epsg": (
        geokeys((1024, 0, 1, 1), (3072, 0, 1, 30000)),
        r"ProjectedCSTypeGeoKey=30000.*not a CRS pyproj knows",
    ),
    "projected-on-geographic-base": (
        geokeys((1024, 0, 1, 1), (2048, 0, 1, 4258), (3072, 0, 1, 32767)),
        r"ProjectedCSTypeGeoKey=32767.*laspy reads only as its base EPSG:4258",
    ),
}


@pytest.mark.parametrize("case", list(UNREADABLE_KEYS))
def test_unreadable_geotiff_keys_are_refused_unless_a_crs_is_given(tmp_path, case):
    records, what = UNREADABLE_KEYS[case]
    grid = grid_at()
    x, y, z = points(800, grid)
    path = write_las(tmp_path / "keys.las", x, y, z, crs=None, vlrs=records)
    if case == "user-defined":  # the defect: laspy sees "no CRS" and a build assumed one silently
        assert laspy.read(path).header.parse_crs() is None
    pattern = (
        rf"keys\.las: the header's CRS records do not read: GeoTIFF keys .*{what}.*--default-crs"
    )
    with pytest.raises(DataError, match=pattern):
        dem_stage([path], grid)
    with pytest.raises(DataError, match=pattern):  # the region build's call: a default for no CRS
        dem_stage([path], grid, default_crs=UTM32)
    result = dem_stage([path], grid, crs_for_unreadable=UTM32, fill_distance=0)
    np.testing.assert_allclose(result.array[0], per_cell_mean(*stored(path), grid), rtol=1e-6)
    assert result.report["files"][0]["crs_source"] == "unreadable"
    assert result.report["files"][0]["crs_assumed"] is True
    assert "using EPSG:25832 as asked" in result.report["warnings"][0]

    out = tmp_path / "dem.tif"
    args = ["dem", str(path), "--tile", "356_5645", "--out", str(out)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "keys.las" in refused.output
    assert "ProjectedCSTypeGeoKey" in refused.output and not out.exists()
    given_crs = CliRunner().invoke(cli, ["-q", *args, "--default-crs", UTM32])
    assert given_crs.exit_code == 0, given_crs.output
    assert out.exists()


def test_readable_keys_and_missing_keys_are_unchanged(tmp_path, caplog):
    grid = grid_at()
    x, y, z = points(500, grid)
    keyed = write_las(tmp_path / "keyed.las", x, y, z)  # laspy's own EPSG:25832 keys
    bare = write_las(tmp_path / "bare.las", x, y, z, crs=None)
    a = dem_stage([keyed], grid)
    assert a.report["warnings"] == [] and a.report["files"][0]["crs_source"] == "header"
    with caplog.at_level("WARNING", logger="geosynth.sources.lidar"):
        b = dem_stage([bare], grid, default_crs=UTM32)
    assert "bare.las: no CRS in the header; assuming EPSG:25832" in caplog.text
    np.testing.assert_array_equal(a.array, b.array)


# 5. return number 0 -----------------------------------------------------------------


def test_return_number_zero_is_named_with_the_way_to_grid_it(tmp_path):
    grid = grid_at()
    x, y, z = points(400, grid)
    zeros = np.zeros(len(x))
    path = write_las(tmp_path / "old.las", x, y, z, rnum=zeros, nret=zeros)
    sx, sy, sz = stored(path)
    left, bottom, right, top = grid.bounds
    inside = int(((sx >= left) & (sx < right) & (sy >= bottom) & (sy < top)).sum())
    assert 0 < inside < len(x)
    for returns in ("first", "last"):
        with pytest.raises(DataError) as info:
            dem_stage([path], grid, returns=returns)
        message = str(info.value)
        assert f"no points ({returns} returns)" in message and "old.las" in message
        assert f"all {inside} points inside the grid have return number 0" in message
        assert "--returns all" in message
    result = dem_stage([path], grid, returns="all", fill_distance=0)
    np.testing.assert_allclose(result.array[0], per_cell_mean(sx, sy, sz, grid), rtol=1e-6)
    assert result.report["invalid_return_number"] == len(x)


def test_other_return_numbers_are_listed(tmp_path):
    grid = grid_at()
    x, y, z = points(300, grid, margin=0)
    rnum = np.where(np.arange(300) < 100, 3, 2)
    path = write_las(tmp_path / "late.las", x, y, z, rnum=rnum, nret=np.full(300, 4))
    with pytest.raises(DataError, match="return numbers: 200 with 2, 100 with 3; grid them"):
        dem_stage([path], grid)


# 6. a geocentric header CRS and the --crs override ----------------------------------


def test_geocentric_header_is_named_and_crs_overrides_it(tmp_path):
    grid = grid_at()
    x, y, z = points(800, grid)
    path = write_las(tmp_path / "ecef.las", x, y, z, crs="EPSG:4978", version="1.4")
    assert laspy.read(path).header.parse_crs().is_geocentric
    with pytest.raises(DataError, match=r"ecef\.las: CRS EPSG:4978 .*geocentric.*--crs"):
        dem_stage([path], grid)
    result = dem_stage([path], grid, crs=UTM32, fill_distance=0)
    want = per_cell_mean(*stored(path), grid)
    np.testing.assert_allclose(result.array[0], want, rtol=1e-6, equal_nan=True)
    file_report = result.report["files"][0]
    assert file_report["crs_source"] == "override" and file_report["header_crs"] == "EPSG:4978"
    assert file_report["crs"] == "EPSG:25832" and result.report["warnings"] == []

    out = tmp_path / "dem.tif"
    args = ["dem", str(path), "--tile", "356_5645", "--out", str(out), "--fill-distance", "0"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1 and "EPSG:4978" in refused.output and "--crs" in refused.output
    overridden = CliRunner().invoke(cli, ["-q", *args, "--crs", UTM32])
    assert overridden.exit_code == 0, overridden.output
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1)[: grid.height, : grid.width], result.array[0])


def test_wrong_geographic_header_names_its_crs_in_the_no_overlap_message(tmp_path):
    grid = grid_at()
    x, y, z = points(200, grid)
    path = write_las(tmp_path / "deg.las", x, y, z, crs="EPSG:4326")
    with pytest.raises(DataError) as info:
        dem_stage([path], grid)
    message = str(info.value)
    assert "none of the 1 lidar file(s) overlaps the grid" in message
    assert "deg.las (200 points, x 355997" in message and "EPSG:4326, from the header" in message
    assert "override it with --crs" in message
    assert dem_stage([path], grid, crs=UTM32).report["points_in_grid"] > 0


def test_crs_option_help_and_bad_values():
    help_text = CliRunner().invoke(cli, ["dem", "--help"]).output
    assert "Override the header CRS of every file" in help_text
    assert "--radius R" in help_text
    for option in ("crs", "crs_for_unreadable"):
        with pytest.raises(UsageError, match=rf"{option} 'EPSG:nonsense' is not a CRS"):
            dem_stage([], grid_at(), **{option: "EPSG:nonsense"})


# 8. radius -----------------------------------------------------------------------------


def test_radius_by_hand(tmp_path):
    """3 x 3 cells of 1 m; cell centres at 0.5, 1.5, 2.5.

    p1 (1.5, 1.5) z=10 sits on the middle cell's centre; p2 (2.7, 1.5) z=40
    lies in the east cell, 1.2 m from the middle centre; p3 (-0.3, 1.5) z=100
    lies outside the grid, 0.8 m from the west cell's centre.
    """
    grid = grid_at(left=0.0, top=3.0, width=3, height=3)
    x, y, z = np.array([1.5, 2.7, -0.3]), np.array([1.5, 1.5, 1.5]), np.array([10.0, 40.0, 100.0])
    per_cell = PointGridder(grid)
    per_cell.add(x, y, z)
    pdal_like = PointGridder(grid, radius=2**0.5)
    pdal_like.add(x, y, z)
    a, b = per_cell.values(), pdal_like.values()
    assert a[1, 1] == 10 and a[1, 2] == 40 and np.isnan(a[1, 0]) and per_cell.points_used == 2
    assert b[1, 1] == 25  # p1 and p2 (1.2 < sqrt 2)
    assert b[1, 0] == 55  # p1 (1.0) and p3 (0.8), from outside the grid
    assert b[1, 2] == 25  # p1 (1.0) and p2 (0.2)
    assert b[0, 1] == 10  # p1 (1.0); p2 is sqrt(1.44 + 1) = 1.56 away
    assert b[0, 2] == 40  # p2 (1.02); p1 is exactly sqrt 2 away, not closer: PDAL's strict rule
    assert pdal_like.points_used == 3
    want, counts, used = within_radius(x, y, z, grid, 2**0.5)
    np.testing.assert_array_equal(pdal_like.counts, counts)
    np.testing.assert_array_equal(b, want.astype(np.float32))


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    res=st.sampled_from([0.5, 1.0, 2.0]),
    radius=st.sampled_from([0.3, 0.5, 1.0, 2**0.5, 2.5]),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    stat=st.sampled_from(["mean", "max", "min"]),
)
def test_radius_kernel_matches_brute_force(seed, res, radius, shape, stat):
    grid = grid_at(left=1000.0, top=2000.0, width=shape[1], height=shape[0], res=res)
    x, y, z = points(200, grid, seed=seed, margin=3 * res)
    x[:20] += np.random.default_rng(seed).random(20) * res  # off the lattice too
    g = PointGridder(grid, stat, radius=radius)
    g.add(x[:70], y[:70], z[:70])  # two chunks
    g.add(x[70:], y[70:], z[70:])
    want, counts, used = within_radius(x, y, z, grid, radius, stat)
    np.testing.assert_array_equal(g.counts, counts)
    np.testing.assert_allclose(g.values(), want.astype(np.float32), rtol=1e-6, equal_nan=True)
    assert g.points_used == used


def test_radius_stage_report_and_default(laz, tmp_path):
    path, grid = laz
    sx, sy, sz = stored(path)
    default = dem_stage([path], grid, fill_distance=0)
    assert default.report["radius"] is None
    np.testing.assert_array_equal(
        dem_stage([path], grid, radius=None, fill_distance=0).array, default.array
    )
    np.testing.assert_allclose(default.array[0], per_cell_mean(sx, sy, sz, grid), rtol=1e-6)
    result = dem_stage([path], grid, radius=1.4142, fill_distance=0, chunk_size=700)
    want, counts, used = within_radius(sx, sy, sz, grid, 1.4142)
    np.testing.assert_allclose(result.array[0], want, rtol=1e-6, equal_nan=True)
    assert result.report["radius"] == 1.4142 and result.report["points_in_grid"] == used
    assert result.report["holes"] < default.report["holes"]
    out = tmp_path / "dem.tif"
    ref = tmp_path / "ref.tif"
    write_raster(ref, np.zeros((1, *grid.shape), np.uint8), LEFT, TOP, 1.0)
    args = ["dem", str(path), "--like", str(ref), "--out", str(out), "--fill-distance", "0"]
    cli_result = CliRunner().invoke(cli, [*args, "--radius", "1.4142"])
    assert cli_result.exit_code == 0, cli_result.output
    assert "within 1.4142 of each cell centre" in cli_result.output
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), result.array[0])
    assert CliRunner().invoke(cli, [*args, "--radius", "0"]).exit_code == 2
    with pytest.raises(UsageError, match="radius must be a positive distance"):
        dem_stage([path], grid, radius=-1.0)


def test_file_just_outside_the_grid_counts_within_the_radius(tmp_path):
    grid = grid_at(left=0.0, top=3.0, width=3, height=3)
    path = write_las(tmp_path / "west.las", np.array([-0.3]), np.array([1.5]), np.array([7.0]))
    with pytest.raises(DataError, match="none of the 1 lidar file"):
        dem_stage([path], grid)
    result = dem_stage([path], grid, radius=1.0, fill_distance=0)
    assert result.array[0, 1, 0] == 7 and np.isnan(result.array).sum() == 8


def test_build_refuses_unreadable_keys_unless_default_crs_is_given(tmp_path, one_tile_world):
    """In a region build the catalog's CRS is assumed only for lidar without any CRS record;
    keys that are present but do not read fail the tile, naming the file, until the user
    says the CRS with build-geonrw --default-crs."""
    import shutil

    from geosynth.catalog import load_catalog

    src = tmp_path / "src"
    shutil.copytree(one_tile_world, src)
    (laz,) = src.rglob("3dm_*.laz")
    grid = RasterGrid.for_tile("356_5645", load_catalog().grid)
    x, y, z = points(5000, grid, margin=0.0)
    records, _ = UNREADABLE_KEYS["user-defined"]
    laz.unlink()
    write_las(laz.with_suffix(".las"), x, y, z, crs=None, vlrs=records)
    args = ["-q", "build-geonrw", "--region", "demo", "--source-dir", str(src),
            "--modalities", "dem"]  # fmt: skip
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a.zarr")])
    assert result.exit_code == 1
    assert "FAILED 356_5645" in result.output and "CRS records do not read" in result.output
    assert laz.with_suffix(".las").name in result.output
    result = CliRunner().invoke(
        cli, [*args, "--out", str(tmp_path / "b.zarr"), "--default-crs", "EPSG:25832"]
    )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "c.zarr"), "--crs", "nope"])
    assert result.exit_code == 2 and "--crs 'nope' is not a CRS" in result.output
