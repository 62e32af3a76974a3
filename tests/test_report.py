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
