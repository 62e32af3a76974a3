"""``geosynth model-info``: parameter counts of the networks for a data combination."""

from __future__ import annotations

import json

import click

from geosynth.cli.options import json_option

# generator kinds, defined once in geosynth.ml.generators (not imported here: that imports torch)
KINDS = ("ours", "spade", "pix2pix", "concat", "merge")
RASTER_INPUTS = ("dem", "sar", "rgb")


def _names(ctx, param, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in ("seg", *RASTER_INPUTS)]
    if not names or unknown or len(set(names)) != len(names):
        raise click.BadParameter(
            f"expected distinct names from seg, {', '.join(RASTER_INPUTS)}, got {value!r}",
            ctx=ctx, param=param,
        )  # fmt: skip
    return names


@click.command("model-info")
@click.option(
    "--generator",
    "kind",
    type=click.Choice(KINDS),
    default="ours",
    show_default=True,
    help="Generator kind (ours, spade = labels only, pix2pix = raster only, concat, merge).",
)
@click.option(
    "--inputs",
    default="seg,dem",
    show_default=True,
    callback=_names,
    help="Generator inputs, comma-separated: seg and/or rasters (dem, sar, rgb).",
)
@click.option(
    "--output",
    type=click.Choice(["rgb", "sar"]),
    default="rgb",
    show_default=True,
    help="Image to synthesize.",
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
@click.option(
    "--cap",
    "capacity",
    type=click.IntRange(1),
    default=64,
    show_default=True,
    help="Model capacity: width of the first layer; all widths scale with it.",
)
@click.option(
    "--crop",
    type=click.IntRange(16),
    default=256,
    show_default=True,
    help="Training crop size; picks the discriminator scales (2 below 512, else 3).",
)
@click.option(
    "--scales",
    type=click.IntRange(1),
    default=None,
    help="Discriminator scales [default: from --crop].",
)
@json_option
def model_info(
    kind, inputs, output, sar_channels, num_classes, capacity, crop, scales, as_json
) -> None:
    """Parameters per part and in total of a generator, its discriminator and the U-Net scorer.

    Networks are built on PyTorch's meta device: instant, no memory. With the
    defaults (ours, seg,dem -> rgb, capacity 64) the counts match the code
    published with the paper: 240,263,491 / 5,554,050 / 31,032,395.
    """
    from geosynth.catalog import load_catalog
    from geosynth.errors import UsageError
    from geosynth.ml import (
        KIND_INPUTS,
        DiscriminatorConfig,
        UNetConfig,
        build_discriminator,
        build_generator,
        build_unet,
        count_parameters,
        default_num_scales,
        generator_config_for,
        on_meta,
        parts,
    )

    if num_classes is None:
        num_classes = load_catalog().classes.num_classes
    channels = {"seg": num_classes, "dem": 1, "sar": sar_channels, "rgb": 3}
    if output in inputs:
        raise UsageError(f"--output {output} cannot also be an input (--inputs {','.join(inputs)})")
    rasters = [n for n in inputs if n != "seg"]
    uses_labels, uses_raster = KIND_INPUTS[kind]
    if uses_labels != ("seg" in inputs) or uses_raster != bool(rasters):
        needs = " and ".join(
            w
            for w, used in (("seg", uses_labels), ("a raster (dem, sar, rgb)", uses_raster))
            if used
        )
        raise UsageError(f"--generator {kind} takes {needs} only; got --inputs {','.join(inputs)}")
    g_cfg = generator_config_for(
        kind, num_classes, sum(channels[n] for n in rasters), channels[output], capacity=capacity
    )
    d_cfg = DiscriminatorConfig.for_generator(
        g_cfg, num_scales=scales or default_num_scales(crop), capacity=capacity
    )
    u_cfg = UNetConfig(in_channels=channels[output], num_classes=num_classes)
    report = {}
    for name, build, cfg in (
        ("generator", build_generator, g_cfg),
        ("discriminator", build_discriminator, d_cfg),
        ("unet", build_unet, u_cfg),
    ):
        model = on_meta(build, cfg)
        report[name] = {
            "config": cfg.to_dict(),
            "parts": parts(model, expand=("scales",)),
            "total": count_parameters(model),
        }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    titles = {
        "generator": f"generator {kind}: {','.join(inputs)} -> {output} "
                     f"({channels[output]} ch), capacity {capacity}",
        "discriminator": f"discriminator: {d_cfg.num_scales} scales, {d_cfg.in_channels} input "
                         f"channels, capacity {capacity}",
        "unet": f"U-Net scorer: {output} -> {num_classes} classes",
    }  # fmt: skip
    for name, info in report.items():
        click.echo(titles[name])
        rows = [*info["parts"].items(), ("total", info["total"])]
        width = max(len(k) for k, _ in rows)
        for part, n in rows:
            click.echo(f"  {part:<{width}}  {n:>13,}")
