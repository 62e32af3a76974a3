"""``geosynth model-info``: parameter counts of the networks for a data combination."""

from __future__ import annotations

import json

import click

from geosynth.cli import options
from geosynth.ml.networks.configs import PAPER_CROP, GeneratorConfig
from geosynth.names import GENERATOR_KINDS, IMAGE_OUTPUTS, LABELS, RASTER_INPUTS


def _names(ctx, param, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in (LABELS, *RASTER_INPUTS)]
    if not names or unknown or len(set(names)) != len(names):
        raise click.BadParameter(
            f"expected distinct names from {LABELS}, {', '.join(RASTER_INPUTS)}, got {value!r}",
            ctx=ctx, param=param,
        )  # fmt: skip
    return names


@click.command("model-info")
@options.choice_option(
    "--generator",
    "kind",
    choices=GENERATOR_KINDS,
    default="ours",
    help_text="Generator kind (ours, spade = labels only, pix2pix = raster only, concat, merge, diffusion).",
)
@click.option(
    "--inputs",
    default="seg,dem",
    show_default=True,
    callback=_names,
    help="Generator inputs, comma-separated: seg and/or rasters (dem, sar, rgb).",
)
@options.choice_option(
    "--output",
    choices=IMAGE_OUTPUTS,
    default="rgb",
    help_text="Image to synthesize.",
)
@click.option(
    "--sar-channels",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="SAR bands: 1 single-pol (GeoNRW), 2 dual-pol (DFC2020).",
)
@click.option(
    "--classes",
    "num_classes",
    type=click.IntRange(2),
    default=None,
    help="Label classes incl. unlabelled [default: the catalog's, 11].",
)
@options.int_option(
    "--cap",
    "capacity",
    minimum=1,
    default=GeneratorConfig.capacity,
    help_text="Model capacity: width of the first layer; all widths scale with it.",
)
@options.int_option(
    "--crop",
    minimum=16,
    default=PAPER_CROP,
    help_text="Training crop size; picks the discriminator scales (2 below 512, else 3).",
)
@click.option(
    "--scales",
    type=click.IntRange(1),
    default=None,
    help="Discriminator scales [default: from --crop].",
)
@options.json_option
def model_info(
    kind, inputs, output, sar_channels, num_classes, capacity, crop, scales, as_json
) -> None:
    """Parameters per part and in total of a generator, its discriminator and the U-Net scorer.

    Networks are built on PyTorch's meta device: instant, no memory. With the
    defaults (ours, seg,dem -> rgb, capacity 64) the counts match the code
    published with the paper: 240,263,491 / 5,554,050 / 31,032,395.
    """
    from geosynth.catalog import load_catalog
    from geosynth.ml.networks.info import network_report

    num_classes = num_classes or load_catalog().classes.num_classes
    report = network_report(
        kind, inputs, output, num_classes=num_classes, sar_channels=sar_channels,
        capacity=capacity, crop=crop, scales=scales,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    g = report["generator"]["config"]
    titles = {
        "generator": f"generator {kind}: {','.join(inputs)} -> {output} "
                     f"({g['output_channels']} ch), capacity {capacity}",
        "unet": f"U-Net scorer: {output} -> {num_classes} classes",
    }  # fmt: skip
    if "discriminator" in report:  # not for the diffusion generator
        d = report["discriminator"]["config"]
        titles["discriminator"] = (
            f"discriminator: {d['num_scales']} scales, "
            f"{d['condition_channels'] + d['output_channels']} input channels, capacity {capacity}"
        )
    for name, info in report.items():
        click.echo(titles[name])
        rows = [*info["parts"].items(), ("total", info["total"])]
        width = max(len(k) for k, _ in rows)
        for part, n in rows:
            click.echo(f"  {part:<{width}}  {n:>13,}")
