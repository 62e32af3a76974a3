"""``geosynth augment`` (synthetic stores of edited tiles) and training on two stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import UsageError
from geosynth.ml.data.mixing import MixedDataset, check_compatible_stores
from geosynth.ml.synthesis.augment import RANDOM_SWAPS, Edit, apply_edit
from geosynth.ml.training.config import GanConfig
from geosynth.ml.training.train import train_gan
from geosynth.store import TileData, TilePlan, create_store, modality, open_store, verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64
TILES = ["356_5645", "357_5645", "358_5645"]
FOREST_HEIGHT = 15.0


def _ground(offset: float) -> np.ndarray:
    x = np.arange(SIZE)
    return np.broadcast_to(40 + 0.5 * np.abs(x - SIZE / 2) + offset, (SIZE, SIZE)).astype("f4")


def _tile(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Water in the valley, a raised forest block, agricultural land elsewhere."""
    classes = load_catalog().classes
    seg = np.full((SIZE, SIZE), classes.id_of("agricultural"), np.uint8)
    seg[:, SIZE // 2 - 3 : SIZE // 2 + 3] = classes.id_of("water")
    seg[8:28, 40:60] = classes.id_of("forest")
    dem = _ground(k).copy()
    dem[seg == classes.id_of("forest")] += FOREST_HEIGHT
    rng = np.random.default_rng(k)
    rgb = rng.integers(0, 255, (3, SIZE, SIZE), dtype=np.uint8)
    return seg, dem, rgb


def _store(path, modalities=("rgb", "dem", "seg"), size=SIZE, classes=None):
    plans = [
        TilePlan(t, "demo", "test" if k == 2 else "train",
                 transform=Affine(1, 0, 356_000 + 1000 * k, 0, -1, 5_646_000))
        for k, t in enumerate(TILES)
    ]  # fmt: skip
    s = create_store(
        path, plans, tile_shape=(size, size), modalities=[modality(m) for m in modalities],
        dataset="test", crs="EPSG:25832", classes=classes or load_catalog().classes,
    )  # fmt: skip
    for k, t in enumerate(TILES):
        seg, dem, rgb = (a[..., :size, :size] for a in _tile(k))
        data = {"seg": seg, "dem": dem[None], "rgb": rgb}
        s.write_tile(t, TileData(**{m: data[m] for m in modalities}))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return _store(tmp_path_factory.mktemp("aug") / "real.zarr")


@pytest.fixture(scope="module")
def generator(store, tmp_path_factory):
    """A tiny labels + DEM generator trained for one step."""
    out = tmp_path_factory.mktemp("gen") / "ours"
    train_gan(GanConfig(store=str(store), out=str(out), generator="ours", cap=4, crop=32,
                        batch_size=2, workers=0, epochs=1, max_steps=1, tensorboard=False,
                        deterministic=True))  # fmt: skip
    return out


def test_flood_edit_makes_water_at_the_level():
    classes = load_catalog().classes
    seg, dem, _ = _tile(0)
    result, info = apply_edit(Edit("flood", quantile=0.3), seg, dem, classes, 0, 0)
    assert result.mask.any() and not result.mask.all()
    assert (result.seg[result.mask] == classes.id_of("water")).all()
    assert (result.dem[result.mask] == np.float32(info["hmin"])).all()
    assert info["hmin"] == pytest.approx(float(np.quantile(dem, 0.3)))
    np.testing.assert_array_equal(result.seg[~result.mask], seg[~result.mask])
    np.testing.assert_array_equal(result.dem[~result.mask], dem[~result.mask])


def test_swapped_forest_stands_on_the_ground():
    classes = load_catalog().classes
    seg, dem, _ = _tile(1)
    result, _ = apply_edit(Edit("swap", "forest", "grassland"), seg, dem, classes, 0, 1)
    forest = seg == classes.id_of("forest")
    np.testing.assert_array_equal(result.mask, forest)
    assert (result.seg[forest] == classes.id_of("grassland")).all()
    ground = _ground(1)
    error = np.abs(result.dem[forest] - ground[forest])  # interpolated inwards from the border
    assert error.max() < 0.2 * FOREST_HEIGHT and error.mean() < 0.05 * FOREST_HEIGHT
    assert (result.dem <= dem).all()
    np.testing.assert_array_equal(result.dem[~forest], dem[~forest])


def test_random_edits_are_seeded_plausible_discs():
    classes = load_catalog().classes
    seg, dem, _ = _tile(0)
    a, info = apply_edit(Edit("random", index=0), seg, dem, classes, 7, 0)
    b, _ = apply_edit(Edit("random", index=0), seg, dem, classes, 7, 0)
    np.testing.assert_array_equal(a.seg, b.seg)
    assert (info["from"], info["to"]) in RANDOM_SWAPS
    assert a.mask.any() and (seg[a.mask] == classes.id_of(info["from"])).all()
    assert (a.seg[a.mask] == classes.id_of(info["to"])).all()
    yy, xx = np.nonzero(a.mask)
    d = info["disc"]
    assert ((yy - d["row"]) ** 2 + (xx - d["col"]) ** 2 <= d["radius"] ** 2 + 1e-6).all()
    if info["from"] == "forest":
        assert (a.dem[a.mask] < dem[a.mask]).all()  # lowered to the ground
    others = [apply_edit(Edit("random", index=0), seg, dem, classes, s, 0)[0] for s in (1, 2, 3)]
    assert any(not np.array_equal(o.seg, a.seg) for o in others)


def test_augment_writes_a_verified_synthetic_store_with_provenance(store, generator, tmp_path):
    out = tmp_path / "synth.zarr"
    args = ["-q", "augment", "--generator", str(generator), "--store", str(store), "--out",
            str(out), "--swap", "forest:grassland", "--flood", "0.2,0.4", "--random", "1",
            "--seed", "3", "--window", "32"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    s = open_store(out)
    assert verify(s) == []
    assert s.dataset == "synthetic:test"
    syn = s.provenance["synthetic"]
    assert syn["generator_run"] == generator.name and syn["inputs"] == ["seg", "dem"]
    assert [e["tag"] for e in syn["edits"]] == [
        "resynth", "forest-to-grassland", "flood-q20", "flood-q40", "random0"
    ]  # fmt: skip
    expected = {f"{t}.{e['tag']}" for t in TILES[:2] for e in syn["edits"]}
    assert set(s.tile_ids) == expected and set(s.splits) == {"train"}
    real = open_store(store)
    classes = real.classes
    i = s.index("357_5645.flood-q40")
    src = s.sources(i)
    assert src["source_tile"] == "357_5645" and src["edit"] == "flood-q40"
    seg, dem = s.read("seg", i), s.read("dem", i)[0]
    flooded = (seg == classes.id_of("water")) & (real.read("seg", 1) != classes.id_of("water"))
    assert flooded.any() and (dem[flooded] == np.float32(src["hmin"])).all()
    j = s.index("356_5645.resynth")
    np.testing.assert_array_equal(s.read("seg", j), real.read("seg", 0))
    assert s.read("rgb", j).dtype == np.uint8
    assert not np.array_equal(s.read("rgb", j), real.read("rgb", 0))  # synthesized, not copied
    assert s.transform(j) == real.transform(0)


def test_augment_refuses_bad_input_and_writes_nothing(store, generator, tmp_path):
    no_dem = _store(tmp_path / "nodem.zarr", modalities=("rgb", "seg"))
    out = tmp_path / "x.zarr"
    base = ["augment", "--generator", str(generator), "--out", str(out)]
    result = CliRunner().invoke(cli, [*base, "--store", str(no_dem)])
    assert result.exit_code == 2 and "needs dem" in result.output and not out.exists()
    result = CliRunner().invoke(cli, [*base, "--store", str(store), "--swap", "forest:moon"])
    assert result.exit_code == 2 and "unknown class 'moon'" in result.output
    assert not out.exists()
    result = CliRunner().invoke(cli, [*base, "--store", str(store), "--flood", "1.5"])
    assert result.exit_code == 2 and "quantile" in result.output and not out.exists()
    assert not list(tmp_path.glob(".x.zarr*"))


class _Items:
    """A dataset whose samples say which dataset and item they are."""

    def __init__(self, tag: str, n: int):
        self.tag, self.n, self.epochs = tag, n, []

    def __len__(self):
        return self.n

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __getitem__(self, item):
        return {"tag": self.tag, "item": item}


def test_mixing_draws_the_stated_share_seeded():
    main, extra = _Items("real", 40), _Items("synth", 7)
    mixed = MixedDataset(main, extra, 0.25, seed=5, length=40)
    seen = {}
    for epoch in range(3):
        mixed.set_epoch(epoch)
        samples = [mixed[i] for i in range(len(mixed))]
        tags = [s["tag"] for s in samples]
        assert tags.count("synth") == 10 and tags.count("real") == 30
        assert all(bool(s["extra"]) == (s["tag"] == "synth") for s in samples)
        seen[epoch] = tags
    assert main.epochs == extra.epochs == [0, 1, 2]
    again = MixedDataset(_Items("real", 40), _Items("synth", 7), 0.25, seed=5, length=40)
    again.set_epoch(1)
    assert [again[i]["tag"] for i in range(40)] == seen[1]
    assert seen[0] != seen[1]
    # successive epochs walk through all extra items
    items = set()
    for epoch in range(2):
        mixed.set_epoch(epoch)
        items |= {mixed[i]["item"] for i in range(40) if mixed[i]["tag"] == "synth"}
    assert items == set(range(7))
    with pytest.raises(UsageError):
        MixedDataset(main, extra, 1.2, seed=0, length=40)


def test_extra_stores_of_other_classes_or_tiles_are_refused(store, tmp_path):
    from geosynth.catalog import ClassDef

    real = open_store(store)
    small = open_store(_store(tmp_path / "small.zarr", size=48))
    with pytest.raises(UsageError, match="tiles of 48 x 48"):
        check_compatible_stores(real, small, ("rgb", "seg"))
    classes = [ClassDef(c.id, c.key, c.name, c.color) for c in real.classes.classes]
    classes[0] = ClassDef(1, "woods", "woods", "#000000")
    other = open_store(_store(tmp_path / "other.zarr", classes=classes))
    with pytest.raises(UsageError, match="other classes"):
        check_compatible_stores(real, other, ("rgb", "seg"))
    out = tmp_path / "run"
    args = ["train-unet", "--store", str(store), "--out", str(out), "--extra-store",
            str(tmp_path / "small.zarr"), "--crop", "32", "--workers", "0"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "tiles of 48 x 48" in result.output
    assert not out.exists()


def test_unet_trains_on_real_and_synthetic_with_class_weights(store, generator, tmp_path):
    synth = tmp_path / "s.zarr"
    r = CliRunner().invoke(cli, ["-q", "augment", "--generator", str(generator), "--store",
                                 str(store), "--out", str(synth), "--window", "32"])  # fmt: skip
    assert r.exit_code == 0, r.output
    out = tmp_path / "unet"
    args = ["-q", "train-unet", "--store", str(store), "--extra-store", str(synth), "--mix",
            "0.5", "--class-weights", "median", "--loss", "focal", "--input", "rgb", "--out",
            str(out), "--base-channels", "4", "--crop", "32", "--batch-size", "2", "--epochs",
            "1", "--workers", "0", "--no-tensorboard", "--val-split", "none"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 1 and records[-1]["end_of_epoch"]
    saved = (out / "config.yaml").read_text()
    assert "loss: focal" in saved and f"extra_store: {synth}" in saved
    scores = tmp_path / "scores"
    r = CliRunner().invoke(cli, ["-q", "score-unet", "--unet", str(out), "--store", str(store),
                                 "--out", str(scores), "--name", "mixed"])  # fmt: skip
    assert r.exit_code == 0, r.output
    s = json.loads((scores / "scores.json").read_text())
    assert s["unet"]["class_weights"] == "median" and s["unet"]["extra_store"] == str(synth)
    assert s["tiles"] == ["358_5645"] and 0 <= s["pixel_acc"] <= 1
    table = tmp_path / "t.md"
    r = CliRunner().invoke(cli, ["augment-table", str(scores), "--out", str(table), "--figure",
                                 str(tmp_path / "f.png")])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "| mixed | median | focal | 1 |" in table.read_text()
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_demo_report_shows_the_committed_table(tmp_path):
    from geosynth.analysis.augment_scores import (
        demo_report_section,
        demo_table_path,
    )
    from geosynth.pipeline.report import write_report

    table = tmp_path / "t.md"
    table.write_text(
        "Measured 2025-01-01.\n\n| training data | mIoU |\n|---|---:|\n| real | 50.0 |\n"
    )
    lines = demo_report_section(table)
    assert lines[0].startswith("## Synthesized training data") and "| real | 50.0 |" in lines[-2]
    assert demo_report_section(tmp_path / "absent.md") == []
    committed = demo_table_path()
    assert committed is not None  # pipelines/augment_demo_results.md
    md, html = write_report(tmp_path, title="t")
    assert "## Synthesized training data" in md.read_text()
    assert committed.read_text().splitlines()[0] in md.read_text()
