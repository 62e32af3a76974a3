"""The dem stage on LAZ files written here, on zips of them and on the real lidar samples.

Every value check compares with an independent gridding written in this file:
``np.floor`` cell indices and ``np.add.at`` / ``np.maximum.at`` accumulation.
"""

from __future__ import annotations

import zipfile

import laspy
import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import CRS, Transformer

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.io import write_geotiff
from geosynth.sources import lidar
from geosynth.sources.lidar import PointGridder, dem_stage

UTM32 = "EPSG:25832"


def small_grid(left=356000.0, top=5646000.0, width=40, height=30, res=1.0, crs=UTM32):
    return RasterGrid(crs, Affine(res, 0, left, 0, -res, top), width, height)


def reference_grid(x, y, z, grid: RasterGrid, stat="mean"):
    """Plain numpy gridding: cells closed on their west and south edges."""
    left, bottom, _, _ = grid.bounds
    res_x, res_y = grid.resolution
    col = np.floor((np.asarray(x) - left) / res_x).astype(np.int64)
    from_south = np.floor((np.asarray(y) - bottom) / res_y).astype(np.int64)
    ok = (col >= 0) & (col < grid.width) & (from_south >= 0) & (from_south < grid.height)
    row = grid.height - 1 - from_south[ok]
    counts = np.zeros(grid.shape, np.int64)
    np.add.at(counts, (row, col[ok]), 1)
    if stat == "mean":
        acc = np.zeros(grid.shape)
        np.add.at(acc, (row, col[ok]), np.asarray(z)[ok])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = acc / counts
    else:
        ufunc = np.maximum if stat == "max" else np.minimum
        acc = np.full(grid.shape, -np.inf if stat == "max" else np.inf)
        ufunc.at(acc, (row, col[ok]), np.asarray(z)[ok])
        values = acc
    values = np.where(counts > 0, values, np.nan)
    return values, counts


def make_points(n, grid: RasterGrid, seed=0, margin=3.0):
    """Points on a 0.25 m lattice (cell edges included) around ``grid``, with 1-4 returns."""
    rng = np.random.default_rng(seed)
    left, bottom, right, top = grid.bounds
    x = left - margin + rng.integers(0, int((right - left + 2 * margin) * 4), n) / 4
    y = bottom - margin + rng.integers(0, int((top - bottom + 2 * margin) * 4), n) / 4
    z = 50 + rng.random(n) * 30
    nret = rng.integers(1, 5, n)
    rnum = np.minimum(rng.integers(1, 5, n), nret)
    return x, y, np.round(z, 2), rnum, nret


def write_las(path, x, y, z, rnum, nret, crs=UTM32, point_format=1):
    header = laspy.LasHeader(point_format=point_format, version="1.2")
    header.scales = np.array([0.01, 0.01, 0.01])
    header.offsets = np.array([np.floor(np.min(x)), np.floor(np.min(y)), 0.0])
    if crs is not None:
        header.add_crs(CRS.from_user_input(crs))
    las = laspy.LasData(header)
    las.x, las.y, las.z = x, y, z
    las.return_number = np.asarray(rnum, dtype=np.uint8)
    las.number_of_returns = np.asarray(nret, dtype=np.uint8)
    las.write(path)
    return path


@pytest.fixture
def laz(tmp_path):
    grid = small_grid()
    pts = make_points(6000, grid)
    return write_las(tmp_path / "pts.laz", *pts), grid, pts


# --------------------------------------------------------------------------- gridding core


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    res=st.sampled_from([0.5, 1.0, 2.0]),
    shape=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    stat=st.sampled_from(lidar.STATS),
)
def test_gridder_matches_plain_numpy(seed, res, shape, stat):
    grid = small_grid(left=1000.0, top=2000.0, width=shape[1], height=shape[0], res=res)
    x, y, z, *_ = make_points(300, grid, seed=seed, margin=2 * res)
    g = PointGridder(grid, stat)
    g.add(x[:100], y[:100], z[:100])  # two chunks
    g.add(x[100:], y[100:], z[100:])
    want, counts = reference_grid(x, y, z, grid, stat)
    np.testing.assert_array_equal(g.counts, counts)
    np.testing.assert_allclose(g.values(), want.astype(np.float32), rtol=1e-6, equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_points_on_tile_edges_count_exactly_once(seed):
    """Four neighbouring grids share edges; every point of their union lands in exactly one."""
    rng = np.random.default_rng(seed)
    x = 100 + rng.integers(0, 4 * 20 + 1, 400) / 4  # lattice 0.25 m on [100, 120], edges included
    y = 200 + rng.integers(0, 4 * 20 + 1, 400) / 4
    x[:40], y[40:80] = 110.0, 210.0  # many points exactly on the shared edges
    total = 0
    for left in (100.0, 110.0):
        for top in (210.0, 220.0):
            g = PointGridder(small_grid(left, top, 10, 10), "mean")
            g.add(x, y, np.ones_like(x))
            total += int(g.counts.sum())
    inside = int(((x >= 100) & (x < 120) & (y >= 200) & (y < 220)).sum())
    assert total == inside


def test_point_on_edge_goes_east_and_north():
    g = PointGridder(small_grid(0.0, 10.0, 10, 10), "mean")
    g.add(np.array([3.0, 0.0, 10.0]), np.array([5.0, 0.0, 10.0]), np.array([1.0, 2.0, 3.0]))
    # (3, 5): column 3 (east of x=3), row from north 4 (north of y=5); (0, 0): SW cell; (10, 10) out
    assert g.counts[4, 3] == 1 and g.counts[9, 0] == 1 and g.counts.sum() == 2


def test_gridder_refuses_rotated_grid_and_unknown_stat():
    with pytest.raises(UsageError, match="north-up"):
        PointGridder(RasterGrid(UTM32, Affine(1, 0.1, 0, 0, -1, 0), 5, 5))
    with pytest.raises(UsageError, match="median"):
        PointGridder(small_grid(), "median")


@pytest.mark.parametrize("stat", lidar.STATS)
@pytest.mark.parametrize(("left", "top", "res"), [(0.0, 6.0, 1.0), (0.1, 2.2, 0.3)])
def test_numba_kernel_equals_numpy_on_edges_outside_and_nan(stat, left, top, res):
    """Every cell corner and edge midpoint, points just outside, NaN coordinates and heights.

    The compiled kernel must give exactly (not approximately) the numpy
    reference's counts and values: same floor rule, same accumulation order.
    """
    grid = small_grid(left=left, top=top, width=8, height=6, res=res)
    x_edges = left + res * np.arange(-1, 18) / 2  # 19 half-cell steps, 1/2 cell beyond each side
    y_edges = top - 6 * res + res * np.arange(-1, 14) / 2  # 15
    x, y = (a.ravel() for a in np.meshgrid(x_edges, y_edges))
    right, bottom = left + 8 * res, top - 6 * res
    extra_x = np.array([np.nan, left, np.nextafter(left, -np.inf), np.nextafter(right, -np.inf)])
    extra_y = np.array([bottom, np.nan, bottom, np.nextafter(top, -np.inf)])
    x, y = np.concatenate([x, x, extra_x]), np.concatenate([y, y, extra_y])  # each point twice
    z = np.random.default_rng(7).random(len(x)) * 100
    z[3 * 19 + 3] = (
        np.nan
    )  # a NaN height at (left + res, bottom + res): its cell becomes NaN, as np.add.at / np.maximum.at make it
    g = PointGridder(grid, stat)
    g.add(x, y, z)
    with np.errstate(invalid="ignore"):  # NaN -> int cast in the reference
        want, counts = reference_grid(x, y, z, grid, stat)
    np.testing.assert_array_equal(g.counts, counts)
    if res == 1.0:  # exact arithmetic: 4 lattice points per cell, twice, + 1 extra inside
        assert counts.min() == 8 and counts.sum() == 2 * 4 * 8 * 6 + 1
    np.testing.assert_array_equal(g.values(), want.astype(np.float32))  # NaN == NaN here
    assert np.isnan(g.values()).sum() == 1


def test_gridder_refuses_mismatched_arrays():
    g = PointGridder(small_grid(), "mean")
    with pytest.raises(ValueError, match="one length"):
        g.add(np.zeros(3), np.zeros(3), np.zeros(2))


# --------------------------------------------------------------------------- the stage


@pytest.mark.parametrize(
    ("returns", "stat"), [("first", "mean"), ("last", "min"), ("all", "max"), ("all", "mean")]
)
def test_stage_matches_reference(laz, returns, stat):
    path, grid, (x, y, z, rnum, nret) = laz
    keep = {"first": rnum == 1, "last": rnum == nret, "all": np.ones_like(rnum, bool)}[returns]
    want, counts = reference_grid(x[keep], y[keep], z[keep], grid, stat)
    result = dem_stage([path], grid, returns=returns, stat=stat, fill_distance=0, chunk_size=1000)
    assert result.array.shape == (1, *grid.shape) and result.array.dtype == np.float32
    np.testing.assert_allclose(result.array[0], want, rtol=1e-6, atol=1e-4, equal_nan=True)
    assert result.report["points_read"] == len(x)
    assert result.report["points_selected"] == int(keep.sum())
    assert result.report["points_in_grid"] == int(counts.sum())
    assert result.report["holes"] == int((counts == 0).sum())


def test_chunk_size_does_not_change_the_result(laz):
    path, grid, _ = laz
    calls = []
    a = dem_stage([path], grid, chunk_size=700, progress=lambda *c: calls.append(c)).array
    b = dem_stage([path], grid, chunk_size=10**6).array
    np.testing.assert_array_equal(a, b)
    assert len(calls) == 9 and calls[-1] == (6000, 6000)  # ceil(6000 / 700) chunks


def test_holes_filled_up_to_distance_and_rest_reported(tmp_path):
    grid = small_grid(width=30, height=10)
    left, bottom, right, top = grid.bounds
    # points only in the western 10 columns: columns up to 10 + 3 get filled, the rest stay NaN
    xs, ys = np.meshgrid(left + 0.5 + np.arange(10), bottom + 0.5 + np.arange(10))
    x, y = xs.ravel(), ys.ravel()
    path = write_las(
        tmp_path / "west.las", x, y, np.full(x.size, 42.0), np.ones(x.size), np.ones(x.size)
    )
    result = dem_stage([path], grid, fill_distance=3)
    heights = result.array[0]
    assert np.all(heights[:, :13] == pytest.approx(42.0))
    assert np.isnan(heights[:, 14:]).all()
    rep = result.report
    assert rep["cells_with_points"] == 100
    assert rep["filled_pixels"] + rep["holes"] == 200
    assert rep["holes"] == int(np.isnan(heights).sum()) > 0


def test_zip_members_outside_the_grid_are_skipped(tmp_path, laz):
    path, grid, _ = laz
    far = small_grid(left=400000.0)
    write_las(tmp_path / "far.laz", *make_points(100, far, seed=3))
    archive = tmp_path / "lidar.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, "3dm_32_356_5645_1_nw.laz")
        zf.write(tmp_path / "far.laz", "3dm_32_400_5645_1_nw.laz")
    result = dem_stage([archive], grid, chunk_size=500)
    np.testing.assert_array_equal(result.array, dem_stage([path], grid).array)
    assert result.report["skipped_files"] == [f"{archive}!3dm_32_400_5645_1_nw.laz"]
    assert result.report["sources"] == [f"{archive}!3dm_32_356_5645_1_nw.laz"]


def test_zip_member_with_parent_path_is_refused(tmp_path, laz):
    path, grid, _ = laz
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, "../escape.laz")
    with pytest.raises(DataError, match="evil.zip.*outside"):
        dem_stage([archive], grid)


def test_reprojected_points_feet_to_metres(tmp_path):
    """A file in a US-feet state plane CRS lands on a UTM grid, heights converted to metres."""
    feet = CRS.from_epsg(2994)  # NAD83(HARN) / Oregon GIC Lambert (ft)
    grid = small_grid(left=494100.0, top=4877620.0, width=30, height=20, crs="EPSG:32610")
    to_feet = Transformer.from_crs("EPSG:32610", feet, always_xy=True)
    rng = np.random.default_rng(5)
    ux = 494100 + rng.random(2000) * 30
    uy = 4877600 + rng.random(2000) * 20
    fx, fy = to_feet.transform(ux, uy)
    z_ft = np.round(400 + rng.random(2000) * 50, 2)
    path = write_las(tmp_path / "ft.laz", fx, fy, z_ft, np.ones(2000), np.ones(2000), crs=feet)
    result = dem_stage([path], grid, fill_distance=0)
    # independent: the stored (rounded) coordinates back to UTM, z in international feet
    las = laspy.read(path)
    bx, by = Transformer.from_crs(feet, "EPSG:32610", always_xy=True).transform(las.x, las.y)
    want, _ = reference_grid(bx, by, np.asarray(las.z) * 0.3048, grid)
    np.testing.assert_allclose(result.array[0], want, rtol=1e-6, equal_nan=True)
    assert result.report["files"][0]["z_factor"] == pytest.approx(0.3048)


# --------------------------------------------------------------------------- real samples


def test_autzen_lambert_feet(realdata):
    """Real LAZ in a Lambert CRS in feet, gridded on UTM 10N at 1 m against an independent gridding."""
    path = realdata / "lidar" / "autzen_trim.laz"
    grid = small_grid(left=494100.0, top=4877620.0, width=400, height=220, crs="EPSG:32610")
    result = dem_stage([path], grid, fill_distance=0, chunk_size=25_000)
    las = laspy.read(path)
    crs = las.header.parse_crs()
    assert crs.axis_info[0].unit_name == "foot"
    first = np.asarray(las.return_number) == 1
    x, y = Transformer.from_crs(crs, "EPSG:32610", always_xy=True).transform(
        np.asarray(las.x)[first], np.asarray(las.y)[first]
    )
    want, counts = reference_grid(x, y, np.asarray(las.z)[first] * 0.3048, grid)
    assert result.report["points_in_grid"] == int(counts.sum()) == int(first.sum())
    np.testing.assert_allclose(result.array[0], want, rtol=1e-6, equal_nan=True)
    assert np.nanmin(result.array) > 100 and np.nanmax(result.array) < 170  # metres, not feet


def test_las_without_crs_takes_the_default_with_a_warning(realdata, caplog):
    path = realdata / "lidar" / "simple.las"
    grid = small_grid(left=635600.0, top=853600.0, width=340, height=470, res=10.0)
    with caplog.at_level("WARNING", logger="geosynth.sources.lidar"):
        result = dem_stage([path], grid, default_crs=UTM32)
    assert "no CRS" in caplog.text and "simple.las" in caplog.text
    assert result.report["warnings"] and result.report["files"][0]["crs_assumed"]
    assert load_catalog().grid.crs in dem_stage([path], grid).report["warnings"][0]
    las = laspy.read(path)
    first = np.asarray(las.return_number) == 1
    want, counts = reference_grid(
        np.asarray(las.x)[first], np.asarray(las.y)[first], np.asarray(las.z)[first], grid
    )
    assert result.report["points_in_grid"] == int(counts.sum()) > 0
    np.testing.assert_allclose(
        dem_stage([path], grid, fill_distance=0).array[0], want, rtol=1e-6, equal_nan=True
    )


# --------------------------------------------------------------------------- bad input


def test_truncated_laz_names_the_file(tmp_path, laz):
    path, grid, _ = laz
    broken = tmp_path / "broken.laz"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="broken.laz"):
        dem_stage([broken], grid)


def test_no_first_returns_in_grid(tmp_path):
    grid = small_grid()
    x, y, z, _, _ = make_points(50, grid)
    path = write_las(tmp_path / "second.laz", x, y, z, np.full(50, 2), np.full(50, 2))
    with pytest.raises(DataError, match=r"no points \(first returns\).*second\.laz"):
        dem_stage([path], grid)


def test_bad_options():
    with pytest.raises(UsageError, match="returns"):
        dem_stage([], small_grid(), returns="second")
    with pytest.raises(UsageError, match="fill_distance"):
        dem_stage([], small_grid(), fill_distance=-1)
    with pytest.raises(UsageError, match="EPSG:nonsense"):
        dem_stage([], small_grid(), default_crs="EPSG:nonsense")


# --------------------------------------------------------------------------- command line


def test_cli_like_reproduces_the_reference_grid(tmp_path, laz):
    path, grid, _ = laz
    ref = write_geotiff(tmp_path / "ref.tif", np.zeros(grid.shape, np.uint8), grid)
    out = tmp_path / "dem.tif"
    result = CliRunner().invoke(
        cli, ["-q", "dem", str(path), "--like", str(ref), "--out", str(out), "--fill-distance", "0"]
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        assert src.crs == rasterio.crs.CRS.from_user_input(grid.crs)
        assert src.transform == grid.transform and src.shape == grid.shape
        assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
        np.testing.assert_array_equal(
            src.read(1), dem_stage([path], grid, fill_distance=0).array[0]
        )


def test_cli_tile_grid(tmp_path):
    grid = small_grid(left=356990.0, top=5646000.0, width=20, height=20)  # straddles the tile edge
    path = write_las(tmp_path / "t.laz", *make_points(500, grid))
    out = tmp_path / "dem.tif"
    result = CliRunner().invoke(
        cli, ["-q", "dem", str(path), "--tile", "356_5645", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as src:
        assert src.shape == (1000, 1000)
        assert src.transform == Affine(1, 0, 356000, 0, -1, 5646000)
        heights = src.read(1)
    assert np.isfinite(heights[:20, 990:]).all() and np.isnan(heights[500:, :500]).all()


def test_cli_bad_input_exits_1_and_writes_nothing(tmp_path, laz):
    path, grid, _ = laz
    broken = tmp_path / "broken.laz"
    broken.write_bytes(path.read_bytes()[:2000])
    out = tmp_path / "dem.tif"
    result = CliRunner().invoke(cli, ["dem", str(broken), "--tile", "356_5645", "--out", str(out)])
    assert result.exit_code == 1
    assert "broken.laz" in result.output
    assert list(tmp_path.glob("*dem.tif*")) == []


def test_dem_help_shows_the_library_default_fill_distance():
    help_text = CliRunner().invoke(cli, ["dem", "--help"]).output
    assert f"[default: {lidar.DEFAULT_FILL_DISTANCE_PX:g}]" in help_text


# --------------------------------------------------------------------------- demo world


def _demo_truth(world, name):
    with rasterio.open(world / "truth" / f"356_5645_{name}.tif") as src:
        return src.read(1)


def test_demo_tile_matches_plain_gridding_and_truth(one_tile_world):
    (laz,) = one_tile_world.rglob("3dm_*.laz")  # NRW's per-tile file
    grid = RasterGrid.for_tile("356_5645", load_catalog().grid)
    result = dem_stage([laz], grid, fill_distance=0)
    las = laspy.read(laz)
    first = np.asarray(las.return_number) == 1
    want, counts = reference_grid(
        np.asarray(las.x)[first], np.asarray(las.y)[first], np.asarray(las.z)[first], grid
    )
    np.testing.assert_allclose(result.array[0], want, rtol=1e-6, equal_nan=True)
    assert result.report["points_in_grid"] == int(counts.sum())
    # first returns sample the surface: close to the world's true DSM
    dsm = _demo_truth(one_tile_world, "dsm")
    has = np.isfinite(result.array[0])
    error = np.abs(result.array[0][has] - dsm[has])
    assert np.median(error) < 0.1 and np.percentile(error, 90) < 0.25


def test_demo_tile_holes_are_water(one_tile_world):
    """Water absorbs the laser: cells left empty after filling lie on water in the truth."""
    (laz,) = one_tile_world.rglob("3dm_*.laz")
    grid = RasterGrid.for_tile("356_5645", load_catalog().grid)
    result = dem_stage([laz], grid)
    holes = np.isnan(result.array[0])
    rep = result.report
    assert rep["holes"] == int(holes.sum()) > 0
    assert (
        rep["filled_pixels"] + rep["holes"] == grid.width * grid.height - rep["cells_with_points"]
    )
    landcover = _demo_truth(one_tile_world, "landcover")
    assert (landcover[holes] == load_catalog().classes.id_of("water")).all()


def test_demo_tile_last_returns_min_approximate_the_terrain(one_tile_world):
    (laz,) = one_tile_world.rglob("3dm_*.laz")
    grid = RasterGrid.for_tile("356_5645", load_catalog().grid)
    result = dem_stage([laz], grid, returns="last", stat="min", fill_distance=0)
    dtm = _demo_truth(one_tile_world, "dtm")
    has = np.isfinite(result.array[0])
    assert np.median(np.abs(result.array[0][has] - dtm[has])) < 0.1


# --------------------------------------------------------------------------- point classes


def _classed_laz(tmp_path, grid, name="classed.laz"):
    """A LAS 1.4 point-format-6 LAZ (laspy): ground at 50 m (class 2), and first returns of
    noise above it (high noise 18 at 250 m, low noise 7 at 20 m) and in a basement (NRW's
    24 at 47 m), as NRW's point clouds carry them."""
    rng = np.random.default_rng(7)
    left, bottom, right, top = grid.bounds
    n = 4000
    x, y = rng.uniform(left, right, n), rng.uniform(bottom, top, n)
    cls = rng.choice([2, 2, 2, 2, 2, 2, 7, 18, 24], n).astype(np.uint8)
    z = np.select([cls == 18, cls == 7, cls == 24], [250.0, 20.0, 47.0], 50.0)
    header = laspy.LasHeader(point_format=6, version="1.4")
    header.scales, header.offsets = [0.01] * 3, [np.floor(left), np.floor(bottom), 0.0]
    header.add_crs(CRS.from_user_input(UTM32))
    las = laspy.LasData(header)
    las.x, las.y, las.z = x, y, z
    las.return_number = np.ones(n, np.uint8)
    las.number_of_returns = np.ones(n, np.uint8)
    las.classification = cls
    path = tmp_path / name
    las.write(path)
    return path, cls


def test_noise_and_basement_points_never_enter_the_dem(tmp_path):
    grid = small_grid()
    path, cls = _classed_laz(tmp_path, grid)
    result = dem_stage([path], grid, fill_distance=0)
    heights = result.array[0][np.isfinite(result.array[0])]
    assert np.allclose(heights, 50.0)  # the catalog's 7, 18 and 24 are out
    dropped = result.report["dropped_by_class"]
    assert dropped == {str(k): int((cls == k).sum()) for k in (7, 18, 24)}
    assert result.report["classes"] == "classes 7, 18, 24 dropped"
    kept_all = dem_stage([path], grid, fill_distance=0, drop_classes=())  # the authors' way
    assert np.nanmax(kept_all.array[0]) > 100 and kept_all.report["dropped_by_class"] == {}
    ground = dem_stage([path], grid, fill_distance=0, keep_classes=[2])
    assert np.allclose(ground.array[0][np.isfinite(ground.array[0])], 50.0)
    with pytest.raises(UsageError, match="not both"):
        dem_stage([path], grid, drop_classes=[7], keep_classes=[2])


def test_a_cloud_of_noise_only_is_refused_naming_the_classes(tmp_path):
    grid = small_grid()
    path, _ = _classed_laz(tmp_path, grid)
    with pytest.raises(DataError, match=r"classed\.laz: every selected point .* class 2"):
        dem_stage([path], grid, drop_classes=[2, 7, 18, 24])
    out = tmp_path / "d.tif"
    run = CliRunner().invoke(cli, ["dem", str(path), "--like", str(_grid_tif(tmp_path, grid)),
                                   "--keep-classes", "3", "--out", str(out)])  # fmt: skip
    assert run.exit_code == 1 and "classed.laz" in run.output and not out.exists()
    run = CliRunner().invoke(cli, ["dem", str(path), "--like", str(_grid_tif(tmp_path, grid)),
                                   "--drop-classes", "noise", "--out", str(out)])  # fmt: skip
    assert run.exit_code == 2 and "--drop-classes" in run.output
    run = CliRunner().invoke(cli, ["dem", str(path), "--like", str(_grid_tif(tmp_path, grid)),
                                   "--drop-classes", "none", "--out", str(out)])  # fmt: skip
    assert run.exit_code == 0, run.output
    assert "0 points of kept-out classes" in run.output


def _grid_tif(tmp_path, grid):
    path = tmp_path / "grid.tif"
    if not path.exists():
        write_geotiff(path, np.zeros((1, grid.height, grid.width), np.uint8), grid)
    return path
