"""The demo report: an honest verdict and a page that shows the figures."""

from __future__ import annotations

import numpy as np

from geosynth.figures import save_panel
from geosynth.report import verdict, write_report


def metrics(name, miou, fd, reliable=True):
    return {
        "name": name,
        "blocks": {"fake_gt": {"miou": miou}},
        "frechet_distance": fd,
        "fd_reliable": reliable,
    }


def test_verdict_says_when_fusion_does_not_win():
    text = verdict(
        [metrics("dem", 0.10, 5.0), metrics("label", 0.30, 4.0), metrics("ours", 0.20, 3.0)]
    )
    assert "does **not** beat" in text and "30.0% for the best single input (label)" in text
    assert "lowest Frechet distance: ours" in text
    text = verdict([metrics("label", 0.30, 4.0), metrics("ours", 0.35, 3.0, reliable=False)])
    assert "fusing labels and DEM helps" in text and "biased" in text
    assert verdict([metrics("ours", 0.3, 1.0)]).startswith("Not enough")


def test_report_lists_figures_in_markdown_and_html(tmp_path):
    (tmp_path / "figures").mkdir()
    save_panel(tmp_path / "figures" / "class_shares.png", [("dem", "dem", np.ones((1, 8, 8)))])
    (tmp_path / "flood").mkdir()
    for level in (50, 53):
        save_panel(tmp_path / "flood" / f"t_h{level}.png", [("dem", "dem", np.ones((1, 8, 8)))])
    md, page = write_report(tmp_path, title="t")
    text = md.read_text()
    assert "![class shares](figures/class_shares.png)" in text
    assert "flood/t_h53.png" in text and "flood/t_h50.png" not in text  # the highest level
    assert "<img src='figures/class_shares.png'" in page.read_text()


def test_report_has_a_sar_section_when_sar_stats_ran(tmp_path):
    from geosynth.catalog import load_catalog
    from geosynth.sar_stats import Piece, class_stats, looks_check, write_outputs

    rng = np.random.default_rng(0)
    labels = np.ones((80, 80), dtype=np.uint8)
    pieces = [
        Piece(kind, "t", rng.gamma(looks, 1 / looks, labels.shape), labels, labels > 0)
        for kind, looks in (("raw", 1.5), ("synth", 6.0))
    ]
    results = class_stats(pieces, load_catalog().classes)
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
