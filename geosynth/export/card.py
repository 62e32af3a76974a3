"""The dataset card an export writes beside its files: ``DATASET.md`` and ``tiles.csv``.

So that an exported region can be shared (on a dataset hub, say) as the published
GeoNRW is: what the files are, where every tile comes from (the orthophoto's
file, flight date and vintage; the lidar tiles; the land-cover and OSM sources;
the SAR scenes), the build's options and geosynth's version, the class table,
the licences of the sources (catalog ``licences``) and how to cite.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from geosynth import __version__
from geosynth.catalog import Catalog
from geosynth.io import write_text
from geosynth.store.read import GeoStore

CARD = "DATASET.md"
TILES = "tiles.csv"

# which catalog sources a store modality comes from (for the licences)
SOURCES_OF = {"rgb": ("dop",), "dem": ("lidar",), "seg": ("landcover", "osm"), "sar": ("sar",)}
LAYOUT_TEXT = {
    "geonrw": (
        "The published GeoNRW layout: `<city>/<E>_<N>_rgb.jp2` (JPEG2000, uint8 RGB), "
        "`_dem.tif` (float32 metres), `_seg.tif` (uint8 class ids) and `_sar.tif` (float32 "
        "TerraSAR-X amplitude, where a tile has SAR); `<E>_<N>` is the tile's south-west "
        "corner in km of EPSG:25832. torchgeo's `GeoNRW` dataset and the authors' loaders "
        "read it as they read the release."
    ),
    "stac": (
        "Cloud-Optimised GeoTIFFs, `<tile>/<tile>_<modality>.tif`, and a STAC catalog "
        "(`catalog.json`) for GDAL, QGIS, odc-stac and torchgeo's `RasterDataset`."
    ),
}


def tile_rows(store: GeoStore, tiles: Mapping[str, str]) -> list[dict[str, str]]:
    """One row per exported tile: its folder, split and where its modalities come from."""
    rows = []
    for tile, folder in tiles.items():
        i = store.index(tile)
        sources, acquisition = store.sources(i), store.acquisition(i)
        rgb = acquisition.get("rgb", {})
        seg = [s.get("path", "") if isinstance(s, dict) else str(s) for s in sources.get("seg", [])]
        sar = [s.get("product", "") for s in acquisition.get("sar", []) if s.get("used_pixels", 1)]
        rows.append({
            "tile": tile,
            "folder": folder,
            "region": store.regions[i],
            "split": store.splits[i],
            "orthophoto": rgb.get("name") or ";".join(map(str, sources.get("rgb", []))),
            "flight_date": str(rgb.get("date", "")),
            "vintage": str(rgb.get("year", "")),
            "lidar": ";".join(Path(str(p)).name for p in sources.get("dem", [])),
            "landcover": ";".join(sorted({Path(p).name for p in seg if p})),
            "sar_scenes": ";".join(sar),
        })  # fmt: skip
    return rows


def _table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def card_text(
    store: GeoStore,
    layout: str,
    rows: list[dict[str, str]],
    catalog: Catalog,
    options: Mapping[str, object],
) -> str:
    """``DATASET.md``: the card of an export (module docstring)."""
    provenance = store.provenance
    key = "folder" if layout == "geonrw" else "region"  # STAC folders are tiles
    splits = Counter((r[key], r["split"]) for r in rows)
    by_folder = _table(
        [[key, "split", "tiles"]] + [[f, s, str(n)] for (f, s), n in sorted(splits.items())]
    )
    classes = _table(
        [["id", "key", "name", "colour"], ["0", "unlabelled", "no label", "-"]]
        + [[str(c.id), c.key, c.name, c.color] for c in store.classes.classes]
    )
    dates = sorted(r["flight_date"] for r in rows if r["flight_date"])
    vintages = sorted({r["vintage"] for r in rows if r["vintage"]})
    used = [m for m in store.modalities if m in SOURCES_OF]
    licence_rows = [["data", "source", "licence", "terms"]]
    for modality in used:
        for key in SOURCES_OF[modality]:
            spec = catalog.sources.get(key)
            licence = catalog.licences.get(spec.licence) if spec and spec.licence else None
            if licence is None:
                continue
            link = f"[{licence.name}]({licence.url})" if licence.url else licence.name
            licence_rows.append([modality, spec.description, link, licence.terms])
    published = catalog.published.get("geonrw")
    imported = store.dataset == "geonrw"
    lines = [
        f"# {store.dataset} tiles exported by geosynth",
        "",
        f"{len(rows)} tiles of {Path(str(store.path)).name}, exported "
        f"{datetime.now(UTC).date().isoformat()} by geosynth {__version__} "
        f"(`geosynth export --layout {layout}`).",
        "",
        "## Files",
        "",
        LAYOUT_TEXT[layout],
        "",
        f"Per tile: `{TILES}` (folder, split, orthophoto file, flight date and vintage, lidar "
        "tiles, land-cover layers, SAR scenes).",
        "",
        by_folder,
        "",
        "## Sources",
        "",
        f"Orthophoto flight dates {dates[0]} to {dates[-1]}; vintages {', '.join(vintages)}."
        if dates
        else "Flight dates: not recorded by the store.",
        "",
        "How the store was made (its provenance; `geosynth info` shows the same):",
        "",
        "```json",
        json.dumps(
            {
                k: provenance.get(k)
                for k in (
                    "geosynth_version",
                    "created",
                    "catalog_version",
                    "catalog_sha256",
                    "parameters",
                )
                if k in provenance
            },
            indent=1,
            default=str,
        ),  # fmt: skip
        "```",
        "",
        f"Export options: {json.dumps(dict(options), default=str)}.",
        "",
        "## Classes",
        "",
        classes,
        "",
        "## Licences",
        "",
        _table(licence_rows) if len(licence_rows) > 1 else "No source licence recorded.",
        "",
    ]
    if imported and published is not None:
        lines += [f"The imported release: {published.licence}.", ""]
    lines += [
        "## How to cite",
        "",
        f"{published.cite}" if published is not None and published.cite else "",
        "",
        f"and geosynth {__version__}, which built and exported these tiles.",
        "",
    ]
    return "\n".join(lines)


def write_card(
    store: GeoStore,
    folder: Path,
    *,
    layout: str,
    tiles: Mapping[str, str],
    catalog: Catalog,
    options: Mapping[str, object],
) -> list[Path]:
    """Write ``DATASET.md`` and ``tiles.csv`` into ``folder``; returns their paths."""
    rows = tile_rows(store, tiles)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["tile"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / TILES, buffer.getvalue())
    write_text(folder / CARD, card_text(store, layout, rows, catalog, options))
    return [folder / CARD, folder / TILES]
