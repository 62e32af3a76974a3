"""Acquisition conditions and noise in the networks, the datasets and training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from geosynth.errors import DataError, UsageError
from geosynth.ml import (
    GAN_KINDS,
    GENERATOR_KINDS,
    DiscriminatorConfig,
    build_discriminator,
    build_generator,
    count_parameters,
    generator_condition,
    generator_config_for,
    on_meta,
)
from geosynth.ml.data.conditions import (
    condition_width,
    describe,
    override_conditions,
    parse_conditions,
    parse_range,
    parse_season,
    tile_conditions,
)
from geosynth.ml.networks.layers import FiLM

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = 11
SMALL = dict(capacity=4, spade_hidden=8)


def _inputs(cfg, size=32, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = raster = None
    if cfg.label_channels:
        ids = torch.randint(0, cfg.label_channels, (batch, size, size), generator=g)
        labels = F.one_hot(ids, cfg.label_channels).permute(0, 3, 1, 2).float()
    if cfg.raster_channels:
        raster = torch.randn(batch, cfg.raster_channels, size, size, generator=g)
    return labels, raster


def _randomise_film(net: torch.nn.Module, seed: int = 0) -> int:
    """FiLM starts at zero (identity); give it weights as training would."""
    g = torch.Generator().manual_seed(seed)
    films = [m for m in net.modules() if isinstance(m, FiLM)]
    with torch.no_grad():
        for m in films:
            m.linear.weight.copy_(torch.randn(m.linear.weight.shape, generator=g) * 0.3)
    return len(films)


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("kind", GENERATOR_KINDS)
def test_without_conditions_and_noise_the_networks_are_unchanged(kind):
    """Asking for no condition and no noise builds the very same parameters (names and shapes)."""
    plain = on_meta(build_generator, generator_config_for(kind, CLASSES, 1, 3))
    explicit = on_meta(
        build_generator,
        generator_config_for(kind, CLASSES, 1, 3, condition_dim=0, noise_channels=0),
    )
    shapes = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in explicit.state_dict().items()}
    assert not any(isinstance(m, FiLM) for m in plain.modules())
    conditioned = on_meta(
        build_generator, generator_config_for(kind, CLASSES, 1, 3, condition_dim=4)
    )
    assert count_parameters(conditioned) > count_parameters(plain)
    d_plain = DiscriminatorConfig.for_generator(plain.config)
    d_cond = DiscriminatorConfig.for_generator(conditioned.config)
    assert (d_plain.condition_dim, d_cond.condition_dim) == (0, 4)
    assert d_cond.in_channels == d_plain.in_channels + 4


# ----------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("kind", GAN_KINDS)  # the diffusion generator: test_diffusion.py
def test_the_condition_changes_the_output_and_nothing_else_does(kind):
    torch.manual_seed(0)
    cfg = generator_config_for(kind, CLASSES, 1, 3, condition_dim=3, **SMALL)
    g = build_generator(cfg)
    assert _randomise_film(g) > 0
    g.eval()
    labels, raster = _inputs(cfg)
    c = torch.tensor([[0.5, -0.5, 1.0], [0.5, -0.5, 1.0]])
    c_other = c.clone()
    c_other[0] = torch.tensor([-0.9, 0.2, -1.0])  # only sample 0's condition changes
    with torch.no_grad():
        a, b, other = g(labels, raster, c), g(labels, raster, c), g(labels, raster, c_other)
    assert torch.equal(a, b)  # same condition, same image
    assert (a[0] - other[0]).abs().mean() > 1e-3  # another season / look angle: another image
    assert torch.allclose(a[1], other[1], atol=1e-6)  # the other sample keeps its own
    with pytest.raises(UsageError, match="conditions"):
        g(labels, raster)
    with pytest.raises(UsageError, match=r"\(batch, 3\)"):
        g(labels, raster, c[:, :2])


def test_film_starts_as_the_identity():
    torch.manual_seed(0)
    cfg = generator_config_for("ours", CLASSES, 1, 3, condition_dim=2, **SMALL)
    g = build_generator(cfg).eval()
    labels, raster = _inputs(cfg)
    with torch.no_grad():
        a = g(labels, raster, torch.zeros(2, 2))
        b = g(labels, raster, torch.ones(2, 2))
    assert torch.equal(a, b)  # untrained FiLM: the condition has no effect yet


def test_conditioned_discriminator_sees_the_condition():
    torch.manual_seed(0)
    cfg = generator_config_for("ours", CLASSES, 1, 3, condition_dim=2, **SMALL)
    d = build_discriminator(DiscriminatorConfig.for_generator(cfg, num_scales=2, capacity=4))
    d.eval()  # spectral norm's power iteration stays put
    labels, raster = _inputs(cfg)
    cond, image = generator_condition(labels, raster), torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        a = d(cond, image, torch.tensor([[1.0, 0.0], [1.0, 0.0]])).final[0]
        b = d(cond, image, torch.tensor([[-1.0, 0.0], [1.0, 0.0]])).final[0]
    assert (a[0] - b[0]).abs().max() > 1e-4 and torch.allclose(a[1], b[1], atol=1e-6)
    with pytest.raises(UsageError, match="conditions"):
        d(cond, image)


@pytest.mark.parametrize("kind", GAN_KINDS)  # the diffusion generator: test_diffusion.py
def test_noise_draws_different_images_and_a_fixed_noise_repeats(kind):
    torch.manual_seed(0)
    cfg = generator_config_for(kind, CLASSES, 1, 3, noise_channels=8, **SMALL)
    g = build_generator(cfg).eval()
    labels, raster = _inputs(cfg)
    z1 = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    z2 = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b, c = (
            g(labels, raster, noise=z1),
            g(labels, raster, noise=z1),
            g(labels, raster, noise=z2),
        )
        drawn = g(labels, raster)  # noise drawn from torch's generator
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 1e-4
    assert drawn.shape == a.shape
    plain = build_generator(generator_config_for(kind, CLASSES, 1, 3, **SMALL))
    with pytest.raises(UsageError, match="noise"):
        plain(labels, raster, noise=z1)


def test_a_training_step_reaches_the_film_layers():
    torch.manual_seed(0)
    cfg = generator_config_for("merge", CLASSES, 1, 3, condition_dim=2, noise_channels=4, **SMALL)
    g = build_generator(cfg)
    d = build_discriminator(DiscriminatorConfig.for_generator(cfg, num_scales=1, capacity=4))
    labels, raster = _inputs(cfg)
    c = torch.tensor([[1.0, 0.0], [-1.0, 0.5]])
    fake = g(labels, raster, c)
    loss = -d(generator_condition(labels, raster), fake, c).final[0].mean()
    loss.backward()
    films = [m for m in g.modules() if isinstance(m, FiLM)]
    assert films and all(m.linear.weight.grad.abs().sum() > 0 for m in films)


# ----------------------------------------------------------------------------- the vector


def test_condition_vectors_from_tile_metadata():
    acq = {
        "rgb": {"date": "2022-03-21", "year": 2022, "flight": "2022-005"},
        "sar": [
            {"orbit": "ascending", "look": "right", "incidence_deg": 30.0, "valid_pixels": 300},
            {"orbit": "descending", "look": "right", "incidence_deg": 40.0, "valid_pixels": 100},
        ],
    }
    names = parse_conditions("orbit,season,incidence,year,look")
    assert names == ("season", "year", "incidence", "orbit", "look")
    vec = tile_conditions(acq, names, "tile 1_2")
    assert len(vec) == condition_width(names) == 6
    info = describe(names, vec)
    assert info["day_of_year"] == pytest.approx(80, abs=0.6)
    assert info["year"] == pytest.approx(2022)
    assert info["incidence_deg"] == pytest.approx(32.5)  # weighted by the pixels each gave
    assert info["orbit"] == pytest.approx(0.5) and info["look"] == 1.0
    # the pixels each scene gave the image count; a scene that gave none does not
    acq["sar"][0]["used_pixels"], acq["sar"][1]["used_pixels"] = 0, 100
    assert describe(names, tile_conditions(acq, names, "tile 1_2"))["orbit"] == -1.0
    acq["sar"][0]["used_pixels"] = 300
    with pytest.raises(DataError, match="tile 9_9.*flight date"):
        tile_conditions({"rgb": {"year": 2022}}, ("season",), "tile 9_9")
    with pytest.raises(DataError, match="SAR orbit"):
        tile_conditions(acq | {"sar": []}, ("orbit",), "tile 9_9")
    with pytest.raises(UsageError, match="among"):
        parse_conditions("season,weather")
    moved = override_conditions(names, vec, season=parse_season("summer"), orbit=-1)
    assert describe(names, moved)["day_of_year"] == pytest.approx(196, abs=0.6)
    assert describe(names, moved)["orbit"] == -1 and moved[2:4] == vec[2:4]
    with pytest.raises(UsageError, match="--incidence"):
        override_conditions(("season",), vec[:2], incidence=30)
    assert parse_range("80:300:40", "--season") == [80, 120, 160, 200, 240, 280]
    assert parse_range("27,41", "--incidence") == [27, 41]
    with pytest.raises(UsageError, match="--season"):
        parse_season("monsoon")
    assert np.isfinite(vec).all()


# ----------------------------------------------------------------------------- data and training

SEASON_DATES = ["2022-03-20", "2022-06-21", "2022-09-22", "2022-12-21"]


def write_season_store(path, n_train: int = 6, n_test: int = 2, size: int = 64):
    """A tiny store whose orthophotos get brighter towards summer, with flight dates and SAR
    scenes (ascending / descending alternately) in every tile's acquisition metadata."""
    from geosynth.catalog import load_catalog
    from geosynth.store import TileData, TilePlan, create_store, modality

    classes = load_catalog().classes
    from affine import Affine

    plans = [
        TilePlan(
            f"{356 + i}_5645", "demo", "train" if i < n_train else "test",
            transform=Affine(1000 / size, 0, 356_000 + 1000 * i, 0, -1000 / size, 5_646_000),
        )
        for i in range(n_train + n_test)
    ]  # fmt: skip
    store = create_store(
        path, plans, tile_shape=(size, size), modalities=[modality(m) for m in ("rgb", "dem", "seg", "sar")],
        dataset="test", crs="EPSG:25832", classes=classes,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    colors = np.array(classes.palette())
    for k, plan in enumerate(plans):
        date = SEASON_DATES[k % 4]
        gain = 0.6 + 0.5 * np.cos(2 * np.pi * (k % 4 - 1) / 4)  # summer brightest
        seg = np.kron(rng.integers(1, 10, (size // 8, size // 8)), np.ones((8, 8))).astype(np.uint8)
        rgb = np.clip(
            colors[seg].transpose(2, 0, 1) * gain + rng.normal(0, 4, (3, size, size)), 0, 255
        )
        orbit = "ascending" if k % 2 == 0 else "descending"
        valid = np.ones((size, size), dtype=bool)
        store.write_tile(
            plan.tile_id,
            TileData(
                rgb=rgb.astype(np.uint8),
                dem=np.full((1, size, size), 100.0 + k, dtype=np.float32),
                seg=seg,
                sar=(seg[None] / 11).astype(np.float32),
                sar_valid=valid,
                acquisition={
                    "rgb": {"date": date, "year": 2022, "flight": f"2022-{k:03d}"},
                    "sar": [{"orbit": orbit, "look": "right", "incidence_deg": 30.0 + 5 * (k % 3)}],
                },
            ),
        )
    return path


@pytest.fixture(scope="module")
def season_store(tmp_path_factory):
    return write_season_store(tmp_path_factory.mktemp("season") / "season.zarr")


def test_dataset_yields_each_tiles_condition_vector(season_store, tiny_store):
    from geosynth.ml.data.datasets import SynthesisDataset

    ds = SynthesisDataset(season_store, "train", ("seg", "dem"), "rgb", crop=32,
                          conditions=("season", "orbit"))  # fmt: skip
    vectors = [ds[i]["conditions"] for i in range(len(ds))]
    assert all(v.shape == (3,) and v.dtype == torch.float32 for v in vectors)
    assert [describe(("season", "orbit"), v.tolist())["orbit"] for v in vectors[:2]] == [1.0, -1.0]
    assert "conditions" not in SynthesisDataset(season_store, "train", crop=32)[0]
    with pytest.raises(DataError, match="tile 356_5645.*flight date"):
        SynthesisDataset(tiny_store, "train", crop=32, conditions=("season",))


@pytest.fixture(scope="module")
def season_run(season_store, tmp_path_factory):
    """A generator trained three steps with --conditions season,incidence --noise 4."""
    from geosynth.ml.training.config import GanConfig
    from geosynth.ml.training.train import train_gan

    out = tmp_path_factory.mktemp("season_run") / "run"
    cfg = GanConfig(
        store=str(season_store), out=str(out), cap=4, crop=32, batch_size=2,
        workers=0, tensorboard=False, deterministic=True, epochs=1, conditions="season,incidence",
        noise=4, samples=2,
    )  # fmt: skip
    assert cfg.conditions == ("season", "incidence")
    result = train_gan(cfg)
    assert result.step == 3 and all(np.isfinite(v) for v in result.values.values())
    _randomise_film(result.models["generator"])  # 3 steps barely move FiLM off zero
    from geosynth.ml.training.checkpoint import load_checkpoint

    path = out / "checkpoints" / "last.pt"
    payload = load_checkpoint(path)
    payload["models"]["generator"]["state"] = result.models["generator"].state_dict()
    torch.save(payload, path)
    return out


def test_conditioned_noisy_gan_trains_and_reloads(season_run):
    from geosynth.ml.training.checkpoint import load_generator
    from geosynth.ml.training.config import GanConfig

    g, run_cfg = load_generator(season_run)
    assert run_cfg.conditions == ("season", "incidence") and run_cfg.noise == 4
    assert (g.config.condition_dim, g.config.noise_channels) == (3, 4)
    with pytest.raises(UsageError, match="noise"):
        GanConfig(store="s", out="o", noise=-1)


# ----------------------------------------------------------------------------- synthesize, vary


def _cli(args):
    from click.testing import CliRunner

    from geosynth.cli import cli

    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_vary_writes_one_georeferenced_image_per_season(season_store, season_run, tmp_path):
    import rasterio
    from PIL import Image

    out = tmp_path / "vary"
    res = _cli(["vary", "--generator", str(season_run), "--store", str(season_store),
                "--tile", "362_5645", "--season", "80:300:110", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    cogs = sorted(out.glob("362_5645_rgb_*.tif"))
    assert [p.name for p in cogs] == [f"362_5645_rgb_season{d:03d}.tif" for d in (80, 190, 300)]
    images = []
    for path, doy in zip(cogs, (80, 190, 300), strict=True):
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 25832
            assert src.transform.c == 362_000 and src.transform.f == 5_646_000
            tags = __import__("json").loads(src.tags()["geosynth_conditions"])
            assert tags["day_of_year"] == pytest.approx(doy, abs=0.6)
            assert tags["incidence_deg"] == pytest.approx(30.0)  # the tile's own (k = 6)
            images.append(src.read().astype(int))
    assert np.abs(images[0] - images[1]).mean() > 0.5  # another season, another image
    with Image.open(out / "362_5645_vary.gif") as gif:
        assert gif.n_frames == 3
    assert (out / "362_5645_vary.png").stat().st_size > 0
    bad = _cli(["vary", "--generator", str(season_run), "--store", str(season_store),
                "--tile", "362_5645", "--season", "80:300:40", "--orbit", "asc", "--out", str(out)])  # fmt: skip
    assert bad.exit_code == 2 and "exactly one" in bad.output


def test_samples_repeat_with_one_seed_and_differ_with_another(season_store, season_run, tmp_path):
    import rasterio

    def draw(seed, folder):
        res = _cli(["synthesize", "--generator", str(season_run), "--store", str(season_store),
                    "--tiles", "363_5645", "--samples", "2", "--seed", str(seed),
                    "--season", "summer", "--out", str(folder)])  # fmt: skip
        assert res.exit_code == 0, res.output
        out = []
        for k in (1, 2):
            with rasterio.open(folder / f"363_5645_rgb_season196_s{k}.tif") as src:
                out.append(src.read().astype(int))
        return out

    a, b, c = draw(1, tmp_path / "a"), draw(1, tmp_path / "b"), draw(2, tmp_path / "c")
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))  # reproducible
    assert np.abs(a[0] - a[1]).mean() > 0.1  # two samples of one seed differ
    assert np.abs(a[0] - c[0]).mean() > 0.1  # another seed, other samples


def test_condition_options_refused_by_a_generator_trained_without(store_for_plain_run, tmp_path):
    store, run = store_for_plain_run
    args = ["synthesize", "--generator", str(run), "--store", str(store), "--tiles", "362_5645",
            "--out", str(tmp_path)]  # fmt: skip
    res = _cli([*args, "--season", "spring"])
    assert res.exit_code == 2 and "--season" in res.output
    res = _cli([*args, "--samples", "3"])
    assert res.exit_code == 2 and "--noise" in res.output
    assert _cli([*args, "--season", "monsoon"]).exit_code == 2


@pytest.fixture(scope="module")
def store_for_plain_run(season_store, tmp_path_factory):
    from geosynth.ml.training.config import GanConfig
    from geosynth.ml.training.train import train_gan

    out = tmp_path_factory.mktemp("plain_run") / "run"
    train_gan(GanConfig(store=str(season_store), out=str(out), cap=4, crop=32, batch_size=2,
                        workers=0, tensorboard=False, max_steps=1, samples=0))  # fmt: skip
    return season_store, out


def test_evaluate_scores_a_conditioned_generator(season_store, season_run, tmp_path):
    """Table III works for a generator trained with --conditions: each tile gets its own."""
    from geosynth.ml.evaluation.evaluate import evaluate
    from geosynth.ml.training.config import UNetRunConfig
    from geosynth.ml.training.train_unet import train_unet

    unet_run = tmp_path / "unet"
    train_unet(UNetRunConfig(store=str(season_store), out=str(unet_run), crop=32, batch_size=2,
                             workers=0, tensorboard=False, max_steps=1, base_channels=4,
                             val_split=None, samples=0))  # fmt: skip
    result = evaluate(season_run, unet_run, season_store, "test", tmp_path / "eval", device="cpu")
    assert result.metrics["tiles"] == ["362_5645", "363_5645"]
    assert Path(result.metrics["generator"]["run"]) == season_run


def test_validation_crops_carry_their_conditions(season_store, tmp_path):
    """``--val-every`` with a conditioned generator: the validation crops bring their tiles'
    condition vectors (a conditioned G refuses to run without them)."""
    import json

    from geosynth.ml.training.config import GanConfig
    from geosynth.ml.training.train import train_gan

    out = tmp_path / "run"
    train_gan(GanConfig(store=str(season_store), out=str(out), cap=4, crop=32, batch_size=2,
                        workers=0, tensorboard=False, epochs=1, max_steps=2, conditions="season",
                        val_every=2, val_split=None, val_crops=2, samples=0))  # fmt: skip
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r.get("validation")]
    assert [r["step"] for r in val] == [2] and 0 < val[0]["l1"] < 2
