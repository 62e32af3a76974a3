"""The sar stage: EEC product folders and GeoTIFFs -> normalised SAR with a validity mask."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.sources.sar import normalise, read_cal_factor, sar_stage, scene_images, select_scenes

CRS = "EPSG:25832"
ORIGIN = (356000.0, 5646000.0)  # north-west corner of the test grids (inside tile 356_5645)
PRODUCT = "TSX1_SAR__EEC_SE___SL_S_SRA_20200101T053000_20200101T053001"

ANNOTATION = """<?xml version="1.0" encoding="UTF-8"?>
<level1Product>
  <productInfo><acquisitionInfo><polarisationList>{pols}</polarisationList></acquisitionInfo></productInfo>
  <calibration>{constants}</calibration>
</level1Product>
"""
CONSTANT = """<calibrationConstant layerIndex="{i}"><polLayer>{pol}</polLayer>
<DRAoffset>NOT APPLICABLE</DRAoffset><calFactor>{cal}</calFactor></calibrationConstant>"""


def expected_norm(amplitude: np.ndarray) -> np.ndarray:
    """The GeoNRW rule written out independently: clip(20 log10(A) / 100, 0, 1)."""
    with np.errstate(divide="ignore"):
        return np.clip(20.0 * np.log10(amplitude.astype(np.float64)) / 100.0, 0.0, 1.0)


def write_image(path, dn: np.ndarray, transform: Affine, crs: str | None = CRS, nodata=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": dn.shape[1],
        "height": dn.shape[0],
        "count": 1,
        "dtype": "uint16",
        "transform": transform,
        "nodata": nodata,
    }
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn.astype(np.uint16), 1)
    return path


def write_product(
    root,
    name: str,
    images: dict[str, np.ndarray],
    transform: Affine,
    cal: dict[str, float],
    crs: str = CRS,
):
    """An EEC product folder: IMAGEDATA/IMAGE_<POL>_SRA_spot_001.tif per polarisation + annotation."""
    folder = root / name
    for pol, dn in images.items():
        write_image(folder / "IMAGEDATA" / f"IMAGE_{pol}_SRA_spot_001.tif", dn, transform, crs)
    constants = "".join(
        CONSTANT.format(i=i, pol=p, cal=c) for i, (p, c) in enumerate(cal.items(), 1)
    )
    (folder / f"{name}.xml").write_text(ANNOTATION.format(pols=" ".join(cal), constants=constants))
    return folder


def grid(width=40, height=30) -> RasterGrid:
    return RasterGrid(CRS, Affine(1.0, 0.0, ORIGIN[0], 0.0, -1.0, ORIGIN[1]), width, height)


def dn_field(shape, seed=0, low=50, high=60000) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, shape).astype(np.uint16)


def test_aligned_scene_normalised_exactly_and_masked(tmp_path):
    g = grid()
    dn = dn_field((30, 40))
    dn[:, :6] = 0  # 6 of 40 columns without data: 85 % valid
    dn[10, 20] = 1  # amplitude 1 -> 0 dB -> a valid 0
    folder = write_product(tmp_path, PRODUCT, {"HH": dn}, g.transform, {"HH": 1e-5})
    result = sar_stage([folder], g)
    assert result.array.shape == (1, 30, 40) and result.array.dtype == np.float32
    assert result.grid == g and result.skipped is None
    np.testing.assert_array_equal(result.valid, dn > 0)
    np.testing.assert_allclose(result.array[0][dn > 0], expected_norm(dn[dn > 0]), atol=1e-6)
    assert np.all(result.array[0][~result.valid] == 0)
    assert result.valid[10, 20] and result.array[0, 10, 20] == 0
    assert result.report["valid_fraction"] == pytest.approx(34 / 40)


def test_overlapping_scenes_are_averaged_in_amplitude(tmp_path):
    g = grid()
    a = dn_field((30, 40), seed=1)
    b = dn_field((30, 40), seed=2)
    a[:, 30:] = 0  # scene a covers columns 0..29, scene b columns 5..39
    b[:, :5] = 0
    pa = write_image(tmp_path / "a.tif", a, g.transform)
    pb = write_image(tmp_path / "b.tif", b, g.transform)
    result = sar_stage([pa, pb], g)
    count = (a > 0).astype(float) + (b > 0)
    mean = (a.astype(float) + b) / np.maximum(count, 1)
    assert result.valid.all()
    np.testing.assert_allclose(result.array[0], expected_norm(mean), atol=1e-6)
    assert [s["valid_pixels"] for s in result.report["scenes"]] == [30 * 30, 30 * 35]


GEOMETRY = """<?xml version="1.0" encoding="UTF-8"?>
<level1Product>
  <productInfo>
    <missionInfo><orbitDirection>{orbit}</orbitDirection></missionInfo>
    <acquisitionInfo><polarisationList>HH</polarisationList><lookDirection>RIGHT</lookDirection></acquisitionInfo>
    <sceneInfo><sceneCenterCoord><incidenceAngle>{incidence}</incidenceAngle></sceneCenterCoord></sceneInfo>
  </productInfo>
</level1Product>
"""


def geometry_product(root, stamp: str, dn: np.ndarray, orbit: str, incidence: float):
    name = f"TSX1_SAR__EEC_SE___SL_S_SRA_{stamp}T053000_{stamp}T053001"
    folder = root / name
    write_image(folder / "IMAGEDATA" / "IMAGE_HH_SRA_spot_001.tif", dn, grid().transform)
    (folder / f"{name}.xml").write_text(GEOMETRY.format(orbit=orbit, incidence=incidence))
    return folder


def test_scenes_of_different_geometries_are_mosaicked_not_averaged(tmp_path):
    """Ascending and descending looks are never mixed in one pixel: the geometry that
    covers most of the grid supplies its pixels, the other fills the rest; two scenes of
    one geometry are still averaged."""
    asc1, asc2, desc = (dn_field((30, 40), seed=s) for s in (1, 2, 3))
    asc1[:, 25:] = 0  # ascending: columns 0..24 and 0..19 (two passes, one geometry)
    asc2[:, 20:] = 0
    desc[:, :10] = 0  # descending: columns 10..39 (30 columns, more than either pass)
    folders = [
        geometry_product(tmp_path, "20200101", asc1, "ASCENDING", 34.2),
        geometry_product(tmp_path, "20200102", asc2, "ASCENDING", 33.9),
        geometry_product(tmp_path, "20200103", desc, "DESCENDING", 41.0),
    ]
    result = sar_stage(folders, grid())
    assert result.valid.all()
    # the ascending geometry covers 25 columns, the descending one 30: descending first
    np.testing.assert_allclose(result.array[0][:, 10:], expected_norm(desc[:, 10:]), atol=1e-6)
    both = (asc1[:, :10].astype(float) + asc2[:, :10]) / 2  # columns 0..9: the ascending mean
    np.testing.assert_allclose(result.array[0][:, :10], expected_norm(both), atol=1e-6)
    scenes = result.report["scenes"]
    assert [s["orbit"] for s in scenes] == ["ascending", "ascending", "descending"]
    assert [s["valid_pixels"] for s in scenes] == [30 * 25, 30 * 20, 30 * 30]
    assert [s["used_pixels"] for s in scenes] == [30 * 10, 30 * 10, 30 * 30]


def keys_cubic(src: np.ndarray, src_transform: Affine, xs: np.ndarray, ys: np.ndarray):
    """Keys cubic convolution (a = -0.5), GDAL's cubic kernel, at map points: an independent resampler."""

    def w(t):
        t = np.abs(t)
        a = -0.5
        return np.where(
            t <= 1,
            (a + 2) * t**3 - (a + 3) * t**2 + 1,
            np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
        )

    cols, rows = ~src_transform @ (xs, ys)
    u, v = cols - 0.5, rows - 0.5  # pixel-centre coordinates
    i0, j0 = np.floor(u).astype(int), np.floor(v).astype(int)
    out = np.zeros(xs.shape)
    for dj in (-1, 0, 1, 2):
        for di in (-1, 0, 1, 2):
            out += src[j0 + dj, i0 + di] * w(u - (i0 + di)) * w(v - (j0 + dj))
    return out


def test_cubic_resampling_matches_keys_kernel(tmp_path):
    g = grid(30, 24)
    # a coarser (1.25 m), shifted scene: upsampling, so GDAL uses the plain 4 x 4 kernel
    st_ = Affine(1.25, 0.0, ORIGIN[0] - 6.3, 0.0, -1.25, ORIGIN[1] + 5.1)
    dn = dn_field((36, 36), seed=3, low=2000, high=4000)
    result = sar_stage([write_image(tmp_path / "s.tif", dn, st_)], g)
    rows, cols = np.mgrid[0:24, 0:30]
    xs, ys = g.transform @ (cols + 0.5, rows + 0.5)
    expected = keys_cubic(dn.astype(float), st_, xs, ys)
    assert result.valid.all()
    np.testing.assert_allclose(result.array[0], expected_norm(expected), atol=2e-5)


def test_foreign_crs_scene_valid_where_nearest_source_pixel_is_valid(tmp_path):
    from pyproj import Transformer

    g = grid(50, 50)
    # EPSG:32632 (WGS84 / UTM 32), rotated 3 degrees, 1.1 m pixels, like a geocoded EEC scene
    st_ = (
        Affine.translation(ORIGIN[0] - 4, ORIGIN[1] + 3)
        @ Affine.rotation(3)
        @ Affine.scale(1.1, -1.1)
    )
    dn = dn_field((60, 60), seed=4)
    dn[:, 38:] = 0  # the east part of the scene holds no data
    folder = write_product(tmp_path, PRODUCT, {"VV": dn}, st_, {"VV": 2e-5}, crs="EPSG:32632")
    result = sar_stage([folder], g)
    assert result.grid == g and result.array.shape == (1, 50, 50)
    rows, cols = np.mgrid[0:50, 0:50]
    xs, ys = g.transform @ (cols + 0.5, rows + 0.5)
    sx, sy = Transformer.from_crs(CRS, "EPSG:32632", always_xy=True).transform(xs, ys)
    c, r = ~st_ @ (sx, sy)
    c, r = np.floor(c).astype(int), np.floor(r).astype(int)
    inside = (c >= 0) & (c < 60) & (r >= 0) & (r < 60)
    expected = np.zeros_like(inside)
    expected[inside] = dn[r[inside], c[inside]] > 0
    mismatch = (expected != result.valid).mean()
    assert mismatch < 0.01, f"{mismatch:.3%} of pixels disagree on validity"
    assert 0.4 < result.valid.mean() < 0.95


def test_calibration_uses_annotation_cal_factor_per_polarisation(tmp_path):
    g = grid()
    dn = dn_field((30, 40), seed=5, low=20000, high=65000)
    cal = {"HH": 4e-6, "VV": 9e-6}
    folder = write_product(tmp_path, PRODUCT, {"VV": dn}, g.transform, cal)
    assert read_cal_factor(folder / f"{PRODUCT}.xml", "VV") == pytest.approx(9e-6)
    result = sar_stage([folder], g, calibrate=True)
    beta0 = 9e-6 * dn.astype(float) ** 2
    np.testing.assert_allclose(result.array[0], expected_norm(np.sqrt(beta0)), atol=1e-6)
    assert result.report["scenes"][0]["cal_factor"] == pytest.approx(9e-6)
    plain = sar_stage([folder], g)  # uncalibrated: higher by -10 log10(calFactor) dB
    assert np.all(plain.array[0] > result.array[0])


def test_calibrate_without_annotation_names_the_file(tmp_path):
    g = grid()
    path = write_image(tmp_path / "loose.tif", dn_field((30, 40)), g.transform)
    with pytest.raises(DataError, match="loose.tif.*calFactor"):
        sar_stage([path], g, calibrate=True)


def test_multi_polarisation_product_needs_a_choice(tmp_path):
    g = grid()
    folder = write_product(
        tmp_path,
        PRODUCT,
        {"HH": dn_field((30, 40), 6), "VV": dn_field((30, 40), 7)},
        g.transform,
        {"HH": 1e-5, "VV": 1e-5},
    )
    with pytest.raises(UsageError, match="HH, VV"):
        scene_images(folder)
    assert [s.polarisation for s in scene_images(folder, "vv")] == ["VV"]


def test_low_valid_fraction_is_skipped_not_failed(tmp_path):
    g = grid()
    dn = dn_field((30, 40))
    dn[:, 20:] = 0  # 50 % valid < 0.7
    path = write_image(tmp_path / "half.tif", dn, g.transform)
    result = sar_stage([path], g)
    assert result.skipped and "0.500" in result.skipped and "0.7" in result.skipped
    ref = write_image(tmp_path / "ref.tif", np.ones((30, 40)), g.transform)
    out = tmp_path / "sar.tif"
    run = CliRunner().invoke(cli, ["sar", str(path), "--like", str(ref), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "skipped" in run.output and "0.500" in run.output
    assert not out.exists()


def test_select_scenes_keeps_overlapping_ones(tmp_path):
    g = grid()
    near = write_image(tmp_path / "near.tif", dn_field((30, 40)), g.transform)
    far = write_image(
        tmp_path / "far.tif", dn_field((30, 40)), Affine.translation(5000, 0) @ g.transform
    )
    assert select_scenes([near, far], g) == [near]


def test_cli_writes_band_and_internal_mask_on_the_like_grid(tmp_path):
    g = grid()
    dn = dn_field((30, 40), seed=8)
    dn[:3, :] = 0
    folder = write_product(tmp_path, PRODUCT, {"HH": dn}, g.transform, {"HH": 1e-5})
    ref = write_image(tmp_path / "ref.tif", np.ones((30, 40)), g.transform)
    out = tmp_path / "out" / "sar.tif"
    run = CliRunner().invoke(cli, ["-q", "sar", str(folder), "--like", str(ref), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert not (tmp_path / "out" / "sar.tif.msk").exists()
    with rasterio.open(out) as src, rasterio.open(ref) as r:
        assert (src.crs, src.transform, src.shape) == (r.crs, r.transform, r.shape)
        assert src.count == 1 and src.dtypes == ("float32",) and src.nodata is None
        band = src.read(1, masked=True)
        np.testing.assert_array_equal(~band.mask, dn > 0)
        np.testing.assert_allclose(band.compressed(), expected_norm(dn[dn > 0]), atol=1e-6)


def test_cli_tile_grid_is_the_catalog_tile(tmp_path):
    tile_grid = RasterGrid.for_tile("356_5645", load_catalog().grid)
    st_ = Affine(4.0, 0.0, 355990.0, 0.0, -4.0, 5646010.0)  # 4 m pixels over the whole tile
    path = write_image(tmp_path / "wide.tif", dn_field((256, 256), seed=9), st_)
    out = tmp_path / "tile.tif"
    run = CliRunner().invoke(cli, ["-q", "sar", str(path), "--tile", "356_5645", "--out", str(out)])
    assert run.exit_code == 0, run.output
    with rasterio.open(out) as src:
        assert src.transform == tile_grid.transform and src.shape == (1000, 1000)
        assert src.crs.to_string() == CRS
        assert src.dataset_mask().all()


def test_scene_that_misses_the_grid_exits_1_naming_it(tmp_path):
    g = grid()
    far = write_image(
        tmp_path / "far_away.tif", dn_field((30, 40)), Affine.translation(0, 20000) @ g.transform
    )
    with pytest.raises(DataError, match="far_away.tif.*does not overlap"):
        sar_stage([far], g)
    ref = write_image(tmp_path / "ref.tif", np.ones((30, 40)), g.transform)
    out = tmp_path / "sar.tif"
    run = CliRunner().invoke(cli, ["sar", str(far), "--like", str(ref), "--out", str(out)])
    assert run.exit_code == 1 and "far_away.tif" in run.output
    assert not out.exists()


def test_geotiff_without_crs_exits_1_naming_it(tmp_path):
    g = grid()
    bare = write_image(tmp_path / "bare.tif", dn_field((30, 40)), g.transform, crs=None)
    ref = write_image(tmp_path / "ref.tif", np.ones((30, 40)), g.transform)
    out = tmp_path / "sar.tif"
    run = CliRunner().invoke(cli, ["sar", str(bare), "--like", str(ref), "--out", str(out)])
    assert run.exit_code == 1 and "bare.tif" in run.output and "no CRS" in run.output
    assert not out.exists()


def test_truncated_image_exits_1_naming_it(tmp_path):
    g = grid(200, 200)
    path = write_image(tmp_path / "cut.tif", dn_field((200, 200), seed=10), g.transform)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.tif"):
        sar_stage([path], g)


def test_product_folder_without_images_names_it(tmp_path):
    (tmp_path / PRODUCT / "IMAGEDATA").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{PRODUCT}.*IMAGE_"):
        sar_stage([tmp_path / PRODUCT], grid())


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, (8,), elements=st.floats(0, 1e7, width=32)))
def test_normalise_is_bounded_monotonic_and_the_catalog_rule(amplitude):
    norm = load_catalog().sar
    out = normalise(amplitude, norm)
    assert out.dtype == np.float32 and np.all((out >= 0) & (out <= 1))
    order = np.argsort(amplitude, kind="stable")
    assert np.all(np.diff(out[order]) >= 0)
    positive = amplitude > 0
    np.testing.assert_allclose(out[positive], expected_norm(amplitude[positive]), atol=1e-6)
    assert np.all(out[~positive] == 0)


# --------------------------------------------------------------------------- the demo world


@pytest.fixture(scope="module")
def demo_world(one_tile_world):
    from geosynth.demo import read_manifest

    return one_tile_world, read_manifest(one_tile_world)


def test_demo_scenes_cover_the_tile_as_the_manifest_says(demo_world):
    root, manifest = demo_world
    tile = manifest["tiles"][0]["id"]
    g = RasterGrid.for_tile(tile, load_catalog().grid)
    scenes = [root / s["folder"] for s in manifest["sar"]["scenes"]]
    result = sar_stage(scenes, g, calibrate=True)
    assert result.grid == g and result.array.shape == (1, 1000, 1000)
    for entry, scene in zip(result.report["scenes"], manifest["sar"]["scenes"], strict=True):
        assert entry["valid_pixels"] / 1e6 == pytest.approx(
            scene["coverage"].get(tile, 0), abs=1e-3
        )
        assert entry["cal_factor"] == pytest.approx(manifest["sar"]["cal_factor"])
    union = min(1.0, max(s["coverage"].get(tile, 0) for s in manifest["sar"]["scenes"]))
    assert result.report["valid_fraction"] >= union - 1e-3


def test_demo_scene_values_match_keys_cubic_in_its_utm_crs(demo_world):
    from pyproj import Transformer

    root, manifest = demo_world
    tile = manifest["tiles"][0]["id"]
    full = next(s for s in manifest["sar"]["scenes"] if s["coverage"].get(tile) == 1.0)
    g = RasterGrid.for_tile(tile, load_catalog().grid)
    result = sar_stage([root / full["folder"]], g)
    assert result.valid.all() and result.skipped is None
    with rasterio.open(root / full["image"]) as src:
        dn, st_, crs = src.read(1).astype(float), src.transform, src.crs.to_string()
    rows, cols = np.mgrid[0:1000:7, 0:1000:7]  # every 7th pixel keeps the check quick
    xs, ys = g.transform @ (cols + 0.5, rows + 0.5)
    sx, sy = Transformer.from_crs(g.crs, crs, always_xy=True).transform(xs, ys)
    amplitude = keys_cubic(dn, st_, sx, sy)
    expected = np.where(amplitude > 0, expected_norm(np.maximum(amplitude, 1e-12)), 0.0)
    np.testing.assert_allclose(result.array[0, ::7, ::7], expected, atol=1e-5)
