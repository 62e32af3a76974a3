"""The demo report: data, setup, an honest Table III with the paper's reference row, figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geosynth.analysis.results import write_reports
from geosynth.catalog import load_catalog
from geosynth.figures import land_colormap, save_panel
from geosynth.pipeline.report import fd_rankable, verdict, write_report
from geosynth.store.stats import plot_class_shares, write_shares_csv


def metrics(name, miou, fd, samples=300, dim=240, kind="spade", inputs=("seg",)):
    block = {"miou": miou, "pixel_acc": 0.5, "iou": {}, "title": "t", "pixels": 1}
    return {
        "format": "geosynth-eval/1",
        "name": name,
        "generator": {"kind": kind, "inputs": list(inputs), "output": "rgb"},
        "blocks": {"real_gt": dict(block, miou=0.6), "fake_gt": block, "fake_real": block},
        "frechet_distance": fd,
        "fd_samples": samples,
        "feature_dim": dim,
        "window": [512, 512],
        "tiles": ["358_5645", "359_5645", "358_5646"],
        "split": "test",
        "classes": [],
    }


def test_fd_is_ranked_only_on_more_samples_than_dimensions():
    assert fd_rankable(metrics("a", 0.1, 3.0, samples=241, dim=240))[0]
    ok, why = fd_rankable(metrics("a", 0.1, 3.0, samples=3, dim=240))
    assert not ok and "3 samples in 240 dimensions" in why
    assert not fd_rankable(metrics("a", 0.1, None))[0]
    text = verdict(
        [metrics("dem", 0.10, 5.0), metrics("label", 0.30, 4.0), metrics("ours", 0.20, 3.0)]
    )
    assert "does **not** beat" in text and "30.0% for the best single input (label)" in text
    assert "lowest Frechet distance: ours" in text
    few = [metrics(n, m, fd, samples=3) for n, m, fd in (("dem", 0.1, 1.0), ("ours", 0.3, 9.0))]
    text = verdict(few)
    assert "fusing labels and DEM helps" in text and "lowest Frechet" not in text
    assert "not ranked: 3 samples in 240 dimensions" in text
    assert verdict([metrics("ours", 0.3, 1.0)]).startswith("Not enough")
    # seeds: a lead smaller than the two spreads together is no lead
    seeds = [metrics(f"{n}-s{k}", m + d, 1.0) for n, m in (("label", 0.265), ("ours", 0.277))
             for k, d in enumerate((-0.08, 0.0, 0.08))]  # fmt: skip
    text = verdict(seeds)
    assert "within the spread of the seeds" in text and "neither better nor worse" in text
    apart = [metrics(f"{n}-s{k}", m + d, 1.0) for n, m in (("label", 0.2), ("ours", 0.4))
             for k, d in enumerate((-0.01, 0.0, 0.01))]  # fmt: skip
    assert "fusing labels and DEM helps" in verdict(apart)


def _demo_folder(root, samples=3):
    classes = load_catalog().classes
    (root / "figures").mkdir(parents=True)
    k = classes.num_classes - 1
    shares = {"train": np.full(k, 1 / k), "test": np.full(k, 1 / k)}
    shares["test"][0] += 0.02
    shares["test"][1] -= 0.02
    plot_class_shares(shares, classes, root / "figures" / "class_shares.png")
    write_shares_csv(shares, classes, root / "figures" / "class_shares.csv")
    for name, kind, inputs in (("dem", "pix2pix", ("dem",)), ("label", "spade", ("seg",)),
                               ("ours", "ours", ("seg", "dem"))):  # fmt: skip
        for seed in (0, 1):
            write_reports(root / "eval" / f"{name}-s{seed}",
                          metrics(f"{name}-s{seed}", 0.2 + 0.1 * seed, 2.0, samples=samples,
                                  kind=kind, inputs=inputs))  # fmt: skip
    run = root / "runs" / "unet"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(
        "task: unet\ninput: rgb\nbase_channels: 16\ncrop: 128\nbatch_size: 8\nlr: 0.002\n"
        "seed: 0\nepochs: 25\nsamples_per_epoch: 160\n"
    )
    (run / "log.jsonl").write_text(json.dumps({"step": 500, "miou": 0.5}) + "\n")
    world = {"params": {"seed": 0, "tiles": [4, 2], "dop_resolution": 0.5, "lidar_density": 4},
             "tiles": [{"id": "356_5645", "split": "train"}, {"id": "358_5645", "split": "test"}]}  # fmt: skip
    (root / "world").mkdir()
    (root / "world" / "world.json").write_text(json.dumps(world))
    seg = np.arange(64, dtype=np.uint8).reshape(8, 8) % 4 + 1
    save_panel(root / "figures" / "inputs.png",
               [("labels", "seg", seg), ("DEM", "dem", np.linspace(40, 90, 64).reshape(1, 8, 8))],
               classes=classes)  # fmt: skip
    for generator in ("diffusion", "ours"):  # one folder per synthesize step
        save_panel(root / "synth" / generator / "358_5645_panel.png",
                   [("labels", "seg", seg)], classes=classes)  # fmt: skip
    (root / "flood").mkdir()
    for level in (50, 53):
        save_panel(root / "flood" / f"t_h{level}.png", [("dem", "dem", np.ones((1, 8, 8)))])


def test_report_explains_data_setup_table_and_reference(tmp_path):
    _demo_folder(tmp_path)
    md, page = write_report(tmp_path, title="t")
    text = md.read_text()
    assert "## Data" in text and "test split: 1 tiles (358_5645)" in text
    assert "| forest | 10.0 | 12.0 | +2.0 |" in text  # class shares by split, difference in pp
    assert "largest difference is 2.0 percentage points, within the 5 pp" in text
    assert "## Setup" in text and "| unet | U-Net scorer (cross-entropy) | rgb -> classes | 16 | 128 | 8 | 500 | 0.002 | 0 |" in text  # fmt: skip
    assert "centre 512 x 512 px window of each of the 3 test tiles" in text
    assert "| ours (ours) | seg+dem | 2 | 60.0 ± 0.0 | 50.0 ± 0.0 | 25.0 ± 7.1 |" in text
    assert "*paper, GeoNRW (reference)*" in text and "*17.0*" in text
    assert "How to read it" in text and "Why the numbers are low" in text
    assert "mean ± standard deviation over the seeds" in text
    assert 'title="3 samples in 240 dimensions: not ranked">2.00 ± 0.00*</span>' in text
    assert "![inputs](figures/inputs.png)" in text
    assert "flood/t_h53.png" in text and "flood/t_h50.png" not in text  # the highest level
    assert "not measured in this run" in text
    for generator in ("diffusion", "ours"):
        assert f"### synthesized tile 358_5645 ({generator})" in text
        assert f"(synth/{generator}/358_5645_panel.png)" in text
    html = page.read_text()
    assert '<img alt="class shares" src="figures/class_shares.png"' in html and "<table>" in html


def test_report_of_one_seed_points_to_the_long_recipe(tmp_path):
    root = tmp_path
    write_reports(root / "eval" / "ours", metrics("ours", 0.3, 1.0, samples=400))
    text = write_report(root)[0].read_text()
    assert "one seed; for the spread between seeds see the long recipe" in text
    assert "pipelines/demo_long_results.md" in text
    assert "| 1.00 |" in text  # ranked: not greyed


def test_figures_have_a_class_legend_and_a_dem_colour_bar(tmp_path):
    import matplotlib.image as mpimg

    classes = load_catalog().classes
    seg = np.array([[1, 2], [3, 3]], dtype=np.uint8)
    dem = np.array([[[40.0, 60.0], [80.0, 100.0]]])
    plain = save_panel(
        tmp_path / "a.png", [("labels", "seg", seg), ("rgb", "rgb", np.zeros((3, 2, 2)))]
    )
    full = save_panel(
        tmp_path / "b.png", [("labels", "seg", seg), ("DEM", "dem", dem)], classes=classes
    )
    a, b = mpimg.imread(plain), mpimg.imread(full)
    assert b.shape[0] > a.shape[0]  # room for the legend below the panels
    forest = np.array(classes.classes[0].rgb) / 255  # a class shown: its legend patch is drawn
    legend_rows = b[int(0.8 * b.shape[0]) :, :, :3]
    assert np.isclose(legend_rows, forest, atol=0.02).all(axis=-1).any()
    low = land_colormap()(0.0)  # the lowest ground is green, not water-blue
    assert low[1] > low[2]


def test_long_recipe_runs_three_seeds_of_three_generators_for_the_report():
    from geosynth.pipeline.recipe import bundled_pipeline, load_pipeline
    from geosynth.pipeline.report import base_name

    long = load_pipeline(bundled_pipeline("demo_long"), {"out": "x"})
    evals = [s for s in long.steps if s.name.startswith("eval-")]
    names = sorted(s.args[s.args.index("--out") + 1].split("/")[-1] for s in evals)
    assert len(names) == 9 and {base_name(n) for n in names} == {"label", "dem", "ours"}
    quick = load_pipeline(bundled_pipeline("demo"), {"out": "x"})
    for recipe in (quick, long):
        steps = {s.name: s for s in recipe.steps}
        assert "--truth" in steps["probe"].args and "-q" not in sum(
            (s.args for s in recipe.steps), ()
        )
        assert steps["download"].args[steps["download"].args.index("--mirror") + 1] == "x/world"
        assert steps["build"].args[steps["build"].args.index("--source-dir") + 1] == "x/raw"


def _speckle_results(sources):
    """class_stats of one 80 x 80 px image of class 1 per ``(kind, looks)`` of Gamma speckle."""
    from geosynth.analysis.sar_stats import Piece, class_stats

    rng = np.random.default_rng(0)
    labels = np.ones((80, 80), dtype=np.uint8)
    pieces = [
        Piece(kind, "t", rng.gamma(looks, 1 / looks, labels.shape), labels, labels > 0)
        for kind, looks in sources
    ]
    return class_stats(pieces, load_catalog().classes)


def test_report_has_a_sar_section_when_sar_stats_ran(tmp_path):
    from geosynth.analysis.sar_stats import looks_check, write_outputs

    results = _speckle_results((("raw", 1.5), ("synth", 6.0)))
    check = looks_check(results, 1.5)
    write_outputs(results, tmp_path / "sar" / "stats", erode_px=3, check=check)
    md, page = write_report(tmp_path, title="t")
    text = md.read_text()
    assert "## SAR: synthesis and speckle statistics" in text
    assert "| raw | " in text and "| synth | " in text and "10^(100 x / 20)" in text
    assert "Theory check passes" in text
    name = next(c.key for c in load_catalog().classes.classes if c.id == 1)
    assert f"sar/stats/sar_stats_{name}.png" in text
    assert f"sar/stats/sar_stats_{name}.png" in page.read_text()


def test_report_shows_the_speckle_of_a_sar_evaluation(tmp_path):
    from geosynth.analysis.sar_stats import speckle_section, write_speckle

    results = _speckle_results((("real", 2.0), ("synth", 8.0)))
    m = metrics("ours-sar", 0.2, 1.0)
    m["generator"]["output"] = "sar"
    m["speckle"] = speckle_section(results, erode_px=3, min_pixels=500, tiles=["358_5645"])
    write_speckle(results, tmp_path / "eval" / "ours-sar")
    write_reports(tmp_path / "eval" / "ours-sar", m)
    write_reports(tmp_path / "eval" / "ours", metrics("ours", 0.3, 1.0))  # rgb: no speckle
    text = write_report(tmp_path, title="t")[0].read_text()
    real, synth = (m["speckle"]["overall"][k]["enl"] for k in ("real", "synth"))
    assert real == pytest.approx(2.0, rel=0.1) and synth == pytest.approx(8.0, rel=0.1)
    assert "## SAR: synthesis and speckle statistics" in text
    assert (
        "`geosynth evaluate` of ours-sar (1 window of split test), speckle (homogeneous areas, "
        f"mean over classes): ENL real {real:.2f} / synthesized {synth:.2f}"
    ) in text
    assert "![speckle ours-sar](eval/ours-sar/speckle.png)" in text
    assert "evaluate` of ours " not in text


def test_evaluation_files_go_into_the_current_folder_and_an_existing_one(tmp_path, monkeypatch):
    """``--out .`` and an existing folder: the files move in from a temporary inside it (no
    temporary beside it, where another file system or a read-only parent may be)."""
    here = tmp_path / "here"
    here.mkdir()
    (here / "notes.txt").write_text("mine")
    monkeypatch.chdir(here)
    write_reports(".", metrics("ours", 0.3, 1.0))
    assert sorted(p.name for p in here.iterdir()) == [
        "iou_per_class.png", "metrics.csv", "metrics.json", "notes.txt", "table_row.md",
    ]  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]  # nothing written beside it


def test_the_diffusion_verdict_counts_a_difference_only_beyond_the_seeds_spread():
    from geosynth.pipeline.report import diffusion_verdict

    both = ("seg", "dem")
    evals = [
        metrics(f"ours-s{i}", m, 1.0, kind="ours", inputs=both)
        for i, m in enumerate((0.20, 0.22, 0.24))
    ]
    assert diffusion_verdict(evals) is None  # no diffusion generator: no sentence
    evals += [metrics(f"diffusion-s{i}", m, 1.0, kind="diffusion", inputs=both)
              for i, m in enumerate((0.30, 0.31, 0.32))]  # fmt: skip
    evals += [metrics(f"diffusion-label-s{i}", m, 1.0, kind="diffusion")
              for i, m in enumerate((0.25, 0.35, 0.30))]  # fmt: skip
    text = diffusion_verdict(evals)
    assert "diffusion (diffusion, dem+seg) 31.0% ± 1.0% against ours (ours) 22.0% ± 2.0%: " \
           "**diffusion better**" in text  # fmt: skip
    assert "against diffusion-label (diffusion) 30.0% ± 5.0%: within the spread" in text
