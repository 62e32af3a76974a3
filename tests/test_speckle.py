"""Speckle statistics (geosynth.analysis.speckle, geosynth.analysis.sar_stats, `geosynth sar-stats`): estimators
against closed forms on simulated speckle, fits recovering their parameters, autocorrelation,
the dB inversion, eroded masks, the CLI on a store with real and synthesized SAR, and the
theory check on the demo world."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from scipy import ndimage

from geosynth.analysis import speckle as sp
from geosynth.catalog import load_catalog

SHAPE = (300, 300)


def _gamma_speckle(looks, mean=2.0, shape=SHAPE, seed=0):
    return np.random.default_rng(seed).gamma(looks, mean / looks, shape)


def _k_sample(looks, alpha, mean=3.0, shape=SHAPE, seed=1):
    rng = np.random.default_rng(seed)
    return mean * rng.gamma(looks, 1 / looks, shape) * rng.gamma(alpha, 1 / alpha, shape)


def _everywhere(image):
    return [(image, np.ones(image.shape, dtype=bool))]


# --------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("looks", [1.0, 1.5, 4.0])
def test_enl_and_cv_match_the_closed_forms_of_gamma_speckle(looks):
    intensity = _gamma_speckle(looks)
    assert sp.enl(intensity) == pytest.approx(looks, rel=0.03)
    assert sp.cv_amplitude(np.sqrt(intensity)) == pytest.approx(
        sp.cv_amplitude_theory(looks), rel=0.01
    )
    assert sp.local_enl(_everywhere(intensity)) == pytest.approx(looks, rel=0.05)


def test_cv_theory_of_one_look_is_the_rayleigh_value():
    assert sp.cv_amplitude_theory(1.0) == pytest.approx(math.sqrt(4 / math.pi - 1), rel=1e-9)
    assert sp.cv_amplitude_theory(100.0) == pytest.approx(1 / math.sqrt(4 * 100), rel=0.01)


def test_local_enl_divides_out_a_slow_backscatter_trend():
    ramp = np.linspace(0.2, 5.0, SHAPE[1])[None, :]  # backscatter 14 dB across the image
    intensity = _gamma_speckle(2.0) * ramp
    assert sp.enl(intensity) < 1.2  # the trend reads as fewer looks over the whole area
    assert sp.local_enl(_everywhere(intensity)) == pytest.approx(2.0, rel=0.05)


# --------------------------------------------------------------------------- fits


@pytest.mark.parametrize("looks, mean", [(1.0, 0.5), (1.5, 2.0), (6.0, 40.0)])
def test_gamma_fit_recovers_its_parameters(looks, mean):
    fit = sp.fit_gamma(_gamma_speckle(looks, mean))
    assert fit.looks == pytest.approx(looks, rel=0.03)
    assert fit.mean == pytest.approx(mean, rel=0.02)


@pytest.mark.parametrize("looks, alpha", [(1.5, 5.0), (2.0, 10.0), (1.0, 3.0)])
def test_k_fit_recovers_its_parameters(looks, alpha):
    sample = _k_sample(looks, alpha)
    free = sp.fit_k(sample)
    assert free.looks == pytest.approx(looks, rel=0.1)
    assert free.alpha == pytest.approx(alpha, rel=0.25)
    assert free.mean == pytest.approx(3.0, rel=0.03)
    fixed = sp.fit_k(sample, looks=looks)
    assert fixed.looks == looks and fixed.looks_fixed
    assert fixed.alpha == pytest.approx(alpha, rel=0.15)


def test_k_fit_of_pure_speckle_finds_no_texture():
    assert sp.fit_k(_gamma_speckle(3.0)).alpha > 30


def test_ks_distance_prefers_the_true_model():
    sample = _k_sample(1.5, 3.0).ravel()[:20000]
    k, g = sp.fit_k(sample), sp.fit_gamma(sample)
    d_k = sp.ks_distance(sample, lambda x: sp.k_cdf(x, k))
    d_g = sp.ks_distance(sample, lambda x: sp.gamma_cdf(x, g))
    assert d_k < 0.015 < d_g


def test_k_pdf_integrates_to_its_cdf():
    fit = sp.KFit(1.5, 4.0, 2.0, False)
    x = np.linspace(1e-6, 30.0, 200001)
    pdf = sp.k_pdf(x, fit)
    assert np.trapezoid(pdf, x) == pytest.approx(1.0, abs=2e-3)
    cumulative = np.concatenate([[0.0], np.cumsum((pdf[1:] + pdf[:-1]) / 2 * np.diff(x))])
    at = [20000, 60000, 120000]
    np.testing.assert_allclose(cumulative[at], sp.k_cdf(x[at], fit), atol=3e-3)


# --------------------------------------------------------------------------- autocorrelation


def test_white_noise_is_uncorrelated_and_a_smoothed_copy_is_not():
    noise = _gamma_speckle(1.0)
    x, y = sp.autocorrelation(_everywhere(noise))
    assert max(abs(v) for v in x + y) < 0.02
    smooth = ndimage.uniform_filter(noise, size=3)  # a 3-px box: rho(1) = 2/3, rho(3) = 0
    x, y = sp.autocorrelation(_everywhere(smooth))
    assert x[0] == pytest.approx(2 / 3, abs=0.02) and y[0] == pytest.approx(2 / 3, abs=0.02)
    assert x[1] == pytest.approx(1 / 3, abs=0.02)
    assert abs(x[2]) < 0.02 and abs(y[4]) < 0.02


def test_autocorrelation_pairs_stay_inside_the_mask():
    image = _gamma_speckle(1.0)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:, :150] = True
    image[:, 150:] = np.arange(SHAPE[1] - 150)[None, :] * 100.0  # a strong trend outside
    x, _ = sp.autocorrelation([(image, mask)])
    assert max(abs(v) for v in x) < 0.02


# --------------------------------------------------------------------------- dB inversion


def test_db_inversion_round_trips_the_store_normalisation():
    from geosynth.sources.sar import normalise

    norm = load_catalog().sar
    amplitude = np.geomspace(1.5, 9e4, 500)
    x = normalise(amplitude, norm)
    back = sp.amplitude_from_normalised(x, norm.db_factor, norm.divisor)
    np.testing.assert_allclose(back, amplitude, rtol=2e-5)  # float32 x
    np.testing.assert_allclose(
        sp.amplitude_from_normalised(np.array([0.0, 0.5, 1.0])), [1, 316.2277660168, 1e5]
    )
    assert sp.amplitude_from_db(np.array([40.0])) == pytest.approx(100.0)
    # clipped values do not come back: every amplitude <= 1 reads as 1
    assert sp.amplitude_from_normalised(normalise(np.array([0.3]), norm))[0] == 1.0


# --------------------------------------------------------------------------- masks


def test_masks_exclude_class_edges_invalid_pixels_and_the_border():
    labels = np.ones((60, 60), dtype=np.uint8)
    labels[:, 30:] = 2
    valid = np.ones_like(labels, dtype=bool)
    valid[40:, :] = False
    r = 4
    masks = sp.homogeneous_masks(labels, valid, [1, 2, 3], r)
    assert not masks[3].any()
    for c, mask in ((1, masks[1]), (2, masks[2])):
        outside = ~((labels == c) & valid)
        # city-block distance from every kept pixel to anything else (or the border) exceeds r
        dist = ndimage.distance_transform_cdt(
            np.pad(~outside, 1, constant_values=False), metric="taxicab"
        )[1:-1, 1:-1]
        assert mask.any() and (dist[mask] > r).all()
        assert mask.sum() == (dist > r).sum()  # and nothing farther away is dropped
    assert not masks[1][:, 30 - r :].any() and not masks[1][40 - r :, :].any()
    assert not masks[1][:r, :].any() and not masks[1][:, :r].any()


def test_eroded_masks_keep_a_blurred_edge_out_of_the_statistics():
    """A bright class beside a dark one, the edge smeared over 2 px as resampling does:
    without erosion the dark class's ENL collapses, eroded it is the speckle's."""
    backscatter = np.where(np.arange(SHAPE[1])[None, :] < 150, 1.0, 100.0) * np.ones(SHAPE)
    blurred = ndimage.uniform_filter1d(backscatter, size=5, axis=1)
    intensity = blurred * _gamma_speckle(2.0, mean=1.0)
    labels = np.where(np.arange(SHAPE[1])[None, :] < 150, 1, 2) * np.ones(SHAPE, dtype=np.uint8)
    raw = sp.homogeneous_masks(labels, None, [1], 0)[1]
    eroded = sp.homogeneous_masks(labels, None, [1], 3)[1]
    assert sp.enl(intensity[raw]) < 1.0
    assert sp.enl(intensity[eroded]) == pytest.approx(2.0, rel=0.05)


# --------------------------------------------------------------------------- the CLI


SIZE = 128
CLASS_INTENSITY = {1: 1e3, 2: 1e4, 3: 1e5, 4: 3e3}  # mean intensity per class (DN^2 scale)


def _write_store(path, looks: float, seed: int = 0):
    """Two tiles with 32-px class blocks; SAR: Gamma speckle of ``looks`` looks on the class
    backscatter, normalised as the store does, with an invalid strip."""
    from geosynth.sources.sar import normalise
    from geosynth.store import TileData, TilePlan, create_store, modality

    catalog = load_catalog()
    plans = [TilePlan(f"{356 + i}_5645", "demo", "test") for i in range(2)]
    store = create_store(
        path, plans, tile_shape=(SIZE, SIZE), modalities=[modality("seg"), modality("sar")],
        dataset="test", crs="EPSG:25832", classes=catalog.classes,
        normalisation={"sar": catalog.sar.to_attrs()},
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    tiles = {}
    for i, plan in enumerate(plans):
        blocks = rng.permutation(np.tile([1, 2, 3, 4], 4)).reshape(4, 4)
        seg = np.kron(blocks, np.ones((32, 32), dtype=np.uint8)).astype(np.uint8)
        mean_i = np.vectorize(CLASS_INTENSITY.get)(seg).astype(np.float64)
        intensity = mean_i * rng.gamma(looks, 1 / looks, seg.shape)
        valid = np.ones(seg.shape, dtype=bool)
        valid[:, :10] = False
        x = normalise(np.sqrt(intensity), catalog.sar)
        store.write_tile(
            plan.tile_id,
            TileData(
                seg=seg,
                sar=(x * valid)[None].astype(np.float32),
                sar_valid=valid,
                transform=Affine(1.0, 0, 356000.0 + 1000 * i, 0, -1.0, 5646000.0),
                crs="EPSG:25832",
            ),
        )
        tiles[plan.tile_id] = intensity
    return tiles


def test_cli_measures_real_and_synthesized_sar(tmp_path):
    import rasterio

    from geosynth.cli import cli

    real = _write_store(tmp_path / "s.zarr", looks=2.0)
    synth = tmp_path / "synth"
    synth.mkdir()
    for tile, intensity in real.items():
        smooth = ndimage.uniform_filter(intensity, size=3)  # what a generator tends to do
        e = int(tile.split("_")[0]) * 1000.0
        with rasterio.open(
            synth / f"{tile}_sar.tif", "w", driver="GTiff", width=SIZE, height=SIZE, count=1,
            dtype="float32", crs="EPSG:25832", transform=Affine(1, 0, e, 0, -1, 5646000.0),
        ) as dst:  # fmt: skip
            dst.write((10 * np.log10(smooth))[None].astype(np.float32))  # dB, as --sar-db
            dst.update_tags(units="dB (20 log10 amplitude)")
    out = tmp_path / "stats"
    args = ["sar-stats", "--store", str(tmp_path / "s.zarr"), "--synth", str(synth)]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "10^(100 x / 20)" in result.output
    with open(out / "sar_stats.csv") as f:
        rows = {(r["source"], r["class"]): r for r in csv.DictReader(f)}
    keys = {c.id: c.key for c in load_catalog().classes.classes}
    for c in CLASS_INTENSITY:
        r, s = rows[("real", keys[c])], rows[("synth", keys[c])]
        assert float(r["enl"]) == pytest.approx(2.0, rel=0.12)
        assert float(s["enl"]) > 2 * float(r["enl"])  # smoothing averages looks
        assert abs(float(r["acf1"])) < 0.05 < 0.5 < float(s["acf1"])
        assert (out / f"sar_stats_{keys[c]}.png").stat().st_size > 1000
    summary = json.loads((out / "sar_stats.json").read_text())
    assert "10^(100 x / 20)" in summary["note"] and summary["erode_px"] == 3


def test_cli_refuses_a_badly_named_raster_and_an_empty_store(tmp_path):
    from geosynth.cli import cli

    _write_store(tmp_path / "s.zarr", looks=1.0)
    bad = tmp_path / "tile.tif"
    bad.write_bytes(b"")
    result = CliRunner().invoke(
        cli,
        [
            "sar-stats",
            "--store",
            str(tmp_path / "s.zarr"),
            "--synth",
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "tile.tif" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "sar-stats",
            "--store",
            str(tmp_path / "s.zarr"),
            "--no-real",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2 and "no SAR to measure" in result.output


# --------------------------------------------------------------------------- the theory check


def test_sar_stats_recovers_the_demo_worlds_looks(one_tile_world, tmp_path):
    """The calibration of the tool: the raw demo SAR was simulated with the looks world.json
    records; the local ENL recovers them within the stated tolerance. The store's SAR
    (cubic 1.25 m -> 1 m, scenes averaged) has more looks and correlated neighbours."""
    import rasterio

    from geosynth.analysis import sar_stats as ss
    from geosynth.grid import RasterGrid
    from geosynth.sources.sar import sar_stage
    from geosynth.store import TileData, TilePlan, create_store, modality

    manifest = json.loads((one_tile_world / "world.json").read_text())
    assert manifest["sar"]["looks"] == 1.5
    scenes, looks = ss.world_scenes(one_tile_world)
    catalog = load_catalog()
    (tile,) = manifest["tiles"]
    with rasterio.open(one_tile_world / tile["truth"]["landcover"]) as src:
        seg, grid = src.read(1), RasterGrid("EPSG:25832", src.transform, src.width, src.height)
    sar = sar_stage(scenes, grid, catalog=catalog)
    store = create_store(
        tmp_path / "w.zarr", [TilePlan(tile["id"], "demo", "test")], tile_shape=seg.shape,
        modalities=[modality("seg"), modality("sar")], dataset="test", crs="EPSG:25832",
        classes=catalog.classes, normalisation={"sar": catalog.sar.to_attrs()},
    )  # fmt: skip
    store.write_tile(
        tile["id"],
        TileData(
            seg=seg, sar=sar.array, sar_valid=sar.valid, transform=grid.transform, crs=grid.crs
        ),
    )
    results = ss.class_stats(
        [*ss.raw_pieces(store, scenes), *ss.store_pieces(store)], catalog.classes
    )
    check = ss.looks_check(results, looks)
    assert check["passed"], ss.check_sentence(check)
    assert abs(check["measured_enl_local"] - 1.5) <= ss.LOOKS_TOLERANCE * 1.5
    raw = {r.class_key: r.stats for r in results if r.kind == "raw"}
    real = {r.class_key: r.stats for r in results if r.kind == "real"}
    assert raw["agricultural"].acf_x[0] < 0.1 < 0.25 < real["agricultural"].acf_x[0]
    assert real["agricultural"].enl_local > 1.3 * raw["agricultural"].enl_local


def test_world_store_finds_the_demo_world_among_the_builds_source_folders(one_tile_world, tmp_path):
    """`sar-stats --world store`: the demo builds from the downloaded copy and the world's
    osm/ and sar/ folders; the world (its world.json with SAR scenes) is one folder up."""
    from geosynth.analysis.sar_stats import world_of_sources

    raw = tmp_path / "raw"
    raw.mkdir()
    folders = [str(raw), str(one_tile_world / "osm"), str(one_tile_world / "sar")]
    assert world_of_sources({"source_dirs": folders}) == one_tile_world
    assert world_of_sources({"source_dir": ", ".join(folders)}) == one_tile_world  # older stores
    assert world_of_sources({"source_dir": str(one_tile_world)}) == one_tile_world
    assert world_of_sources({"source_dirs": [str(raw)]}) is None
    assert world_of_sources({}) is None
