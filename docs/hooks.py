"""mkdocs hook: files that live beside the code, published in the site without a copy.

The demo world's preview, the measured results of the recipes (``pipelines/*_results.md``
and their figures) and the benchmarks' figures each have one home in the repository; the
site serves them under the paths below, so a page links ``assets/...`` or ``results/...``.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent

# site path -> repository path (a folder: every file in it)
EXTERNAL = {
    "assets/demo-preview.png": "geosynth/demo/preview.png",
    "assets/benchmarks": "benchmarks/figures",
    "results/demo-long.md": "pipelines/demo_long_results.md",
    "results/demo_long_figures": "pipelines/demo_long_figures",
    "results/augment-demo.md": "pipelines/augment_demo_results.md",
    "results/diffusion-demo.md": "pipelines/diffusion_demo_results.md",
    "results/diffusion_demo_figures": "pipelines/diffusion_demo_figures",
    "results/augment_demo_iou.png": "pipelines/augment_demo_iou.png",
}


def on_files(files, config):
    for site_path, repo_path in EXTERNAL.items():
        source = ROOT / repo_path
        sources = (
            sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
        )
        for path in sources:
            uri = site_path if path == source else f"{site_path}/{path.name}"
            files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
