"""``geosynth export``: a store's tiles as Cloud-Optimised GeoTIFFs and a STAC catalog.

For GDAL, QGIS, odc-stac and torchgeo's ``RasterDataset``, which read rasters and STAC but
not this Zarr layout. Under ``--out``::

    catalog.json                          STAC catalog (self-contained, relative links)
    <tile>/<tile>.json                    one STAC item per tile (projection extension)
    <tile>/<tile>_<modality>.tif          one COG per modality (asset of the item)
    DATASET.md, tiles.csv                 the dataset card (:mod:`geosynth.export.card`)

Per modality: ``rgb`` uint8 red/green/blue (photometric RGB); ``dem`` float32 metres, nodata
NaN; ``seg`` uint8 class ids with the class colour table, nodata 0 (unlabelled) and the
category names (GDAL's ``.aux.xml`` beside the file; the STAC asset carries them in the
classification extension); ``sar`` float32 with ``sar_valid`` as the internal mask (0 is a
valid value, so no nodata); extras (DFC2020's ``s2``) as stored, with their band names.
Tiles without georeferencing are left out and reported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

from geosynth.errors import DataError, UsageError
from geosynth.grid import RasterGrid
from geosynth.io import write_geotiff, write_text
from geosynth.names import LABELS
from geosynth.store.read import GeoStore

log = logging.getLogger(__name__)

MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass
class ExportResult:
    out: Path
    files: list[str] = field(default_factory=list)
    tiles: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # tile -> why it was left out

    def summary(self) -> str:
        lines = [f"{len(self.tiles)} tile(s), {len(self.files)} COG(s) -> {self.out}/catalog.json"]
        lines += [f"  skipped {t}: {why}" for t, why in self.skipped.items()]
        return "\n".join(lines)


def export_store(
    store: GeoStore,
    out: str | os.PathLike,
    *,
    tiles: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Write the COGs and the STAC catalog of ``store``'s complete tiles (module docstring)."""
    import pystac

    names = list(modalities or store.modalities)
    unknown = [m for m in names if m not in store.modalities]
    if unknown:
        raise UsageError(
            f"--modalities: store {store.path} has no {', '.join(unknown)} "
            f"(has: {', '.join(store.modalities)})"
        )
    indices = [store.index(t) for t in tiles] if tiles else store.tiles()
    out = Path(out)
    result = ExportResult(out)
    complete = set(store.tiles())
    catalog = pystac.Catalog(
        id=f"geosynth-{store.dataset}",
        description=f"{store.dataset} tiles exported from {Path(store.path).name} by geosynth",
    )
    for done, i in enumerate(indices, 1):
        tile = store.tile_ids[i]
        transform, crs = store.transform(i), store.tile_crs(i)
        if i not in complete:
            result.skipped[tile] = "not complete"
        elif transform is None or not crs:
            result.skipped[tile] = "no georeferencing"
        else:
            grid = RasterGrid(crs, transform, *reversed(store.tile_shape))
            item = _item(store, i, grid)
            for name in names:
                if store.present(name)[i]:
                    path = _write(store, i, name, grid, out / tile)
                    result.files.append(str(path))
                    _asset(store, item, name, path)
            catalog.add_item(item)
            result.tiles.append(tile)
        if progress:
            progress(done, len(indices))
    for tile, why in result.skipped.items():
        log.warning("export: tile %s left out: %s", tile, why)
    if not result.tiles:  # nothing of what was asked: no catalog, a data error
        reasons = sorted(set(result.skipped.values())) or ["no tile asked"]
        raise DataError(f"store {store.path}: no tile to export ({'; '.join(reasons)})")
    catalog.normalize_hrefs(str(out))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    from geosynth.catalog import load_catalog
    from geosynth.export.card import write_card

    write_card(store, out, layout="stac", tiles={t: t for t in result.tiles},
               catalog=load_catalog(), options={"modalities": names})  # fmt: skip
    return result


def _write(store: GeoStore, i: int, name: str, grid: RasterGrid, folder: Path) -> Path:
    values = store.read(name, i)
    path = folder / f"{store.tile_ids[i]}_{name}.tif"
    tags = {"geosynth_store": Path(store.path).name, "geosynth_tile": store.tile_ids[i]}
    if name == LABELS:
        table = store.classes
        write_geotiff(
            path, values, grid, nodata=0, descriptions=("land-cover class id",), tags=tags,
            colormap={k: (*rgb, 255) for k, rgb in enumerate(table.palette())},
        )  # fmt: skip
        _category_names(path, [table.name_of(k) for k in range(table.num_classes)])
        return path
    spec = store.modality_spec(name)
    kwargs: dict = {"descriptions": spec.bands, "tags": tags}
    if name == "rgb":
        kwargs["photometric"] = "RGB"
    elif name == "dem":
        kwargs["nodata"] = float("nan")
    elif name == "sar":
        kwargs["mask"] = store.read("sar_valid", i)
    return write_geotiff(path, values, grid, **kwargs)


def _category_names(path: Path, names: list[str]) -> None:
    """GDAL's PAM sidecar ``<file>.aux.xml`` with the band's category names (GDAL and QGIS
    read it; GeoTIFF itself has no place for them)."""
    categories = "".join(f"<Category>{escape(n)}</Category>" for n in names)
    write_text(
        path.with_name(path.name + ".aux.xml"),
        '<PAMDataset><PAMRasterBand band="1"><CategoryNames>'
        f"{categories}</CategoryNames></PAMRasterBand></PAMDataset>\n",
    )


def _item(store: GeoStore, i: int, grid: RasterGrid):
    import pystac
    from pyproj import CRS, Transformer
    from pystac.extensions.projection import ProjectionExtension
    from shapely.geometry import box, mapping
    from shapely.ops import transform as reproject

    to_wgs84 = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform
    footprint = reproject(to_wgs84, box(*grid.bounds).segmentize(grid.width / 10))
    created = store.provenance.get("created")
    when = datetime.fromisoformat(created) if created else datetime.now(UTC)
    item = pystac.Item(
        id=store.tile_ids[i],
        geometry=mapping(footprint),
        bbox=list(footprint.bounds),
        datetime=when,
        properties={"geosynth:region": store.regions[i], "geosynth:split": store.splits[i]},
    )
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = CRS.from_user_input(grid.crs).to_epsg()
    if epsg:
        proj.code = f"EPSG:{epsg}"
    else:
        proj.wkt2 = CRS.from_user_input(grid.crs).to_wkt()
    proj.shape = [grid.height, grid.width]
    proj.transform = [float(v) for v in tuple(grid.transform)[:6]]
    proj.bbox = list(grid.bounds)
    return item


def _asset(store: GeoStore, item, name: str, path: Path) -> None:
    import pystac

    asset = pystac.Asset(
        href=str(path.resolve()),
        media_type=MEDIA_TYPE,
        title=name,
        roles=["labels"] if name == LABELS else ["data"],
    )
    item.add_asset(name, asset)
    if name == LABELS:
        from pystac.extensions.classification import Classification, ClassificationExtension

        classes = ClassificationExtension.ext(asset, add_if_missing=True)
        classes.classes = [Classification.create(value=0, name="unlabelled", nodata=True)] + [
            Classification.create(
                value=c.id, name=c.key, description=c.name, color_hint=c.color.lstrip("#").upper()
            )  # fmt: skip
            for c in store.classes.classes
        ]
