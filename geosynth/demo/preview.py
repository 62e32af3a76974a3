"""An overview picture of a generated demo world: every modality side by side, read from the files.

Panels: orthophoto (RGB) and its NIR false colour, the lidar surface (the
highest return per cell), the land-cover vectors coloured by the catalog
class they map to, OpenStreetMap, the true land cover, and the SAR scenes
(amplitude in dB) with their footprints.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from geosynth.catalog import load_catalog
from geosynth.demo.scene import WORLD_CRS
from geosynth.demo.world import read_manifest, read_tile_file, tile_file
from geosynth.errors import DataError
from geosynth.figures import listed_colormap, patch, subplots
from geosynth.grid import RasterGrid
from geosynth.io import atomic_path

PREVIEW_CELL_M = 4.0  # resolution of the raster panels


def _grid(bounds, cell: float):
    from affine import Affine

    left, bottom, right, top = bounds
    width, height = int(round((right - left) / cell)), int(round((top - bottom) / cell))
    return RasterGrid(WORLD_CRS, Affine(cell, 0, left, 0, -cell, top), width, height)


def _place(canvas: np.ndarray, tile_img: np.ndarray, tile_bounds, bounds, cell: float) -> None:
    left, _, _, top = bounds
    col = int(round((tile_bounds[0] - left) / cell))
    row = int(round((top - tile_bounds[3]) / cell))
    h, w = tile_img.shape[-2:]
    canvas[..., row : row + h, col : col + w] = tile_img


def dop_mosaic(root: Path, manifest: dict, cell: float) -> np.ndarray:
    """(4, H, W) uint8 mosaic of the orthophotos, read decimated (from the files or package)."""
    import rasterio

    bounds = manifest["region_bounds"]
    grid = _grid(bounds, cell)
    out = np.zeros((4, *grid.shape), dtype=np.uint8)
    for t in manifest["tiles"]:
        with rasterio.open(tile_file(root, manifest, t, "dop")) as src:
            n = int(round((src.bounds.right - src.bounds.left) / cell))
            img = src.read(out_shape=(src.count, n, n))
            _place(out, img, tuple(src.bounds), bounds, cell)
    return out


def lidar_surface(root: Path, manifest: dict, cell: float) -> np.ndarray:
    """(H, W) float32: the highest return per cell (NaN where no return, e.g. water)."""
    import laspy

    bounds = manifest["region_bounds"]
    left, _, _, top = bounds
    grid = _grid(bounds, cell)
    out = np.full(grid.shape[0] * grid.shape[1], -np.inf, dtype=np.float64)
    for t in manifest["tiles"]:
        las = laspy.read(io.BytesIO(read_tile_file(root, manifest, t, "lidar")))
        x, y = np.asarray(las.x), np.asarray(las.y)
        col = np.clip(((x - left) / cell).astype(np.int64), 0, grid.width - 1)
        row = np.clip(((top - y) / cell).astype(np.int64), 0, grid.height - 1)
        np.maximum.at(out, row * grid.width + col, np.asarray(las.z))
    out[np.isinf(out)] = np.nan
    return out.reshape(grid.shape).astype(np.float32)


def truth_mosaic(root: Path, manifest: dict, cell: float) -> np.ndarray:
    import rasterio
    from rasterio.enums import Resampling

    bounds = manifest["region_bounds"]
    grid = _grid(bounds, cell)
    out = np.zeros(grid.shape, dtype=np.uint8)
    for t in manifest["tiles"]:
        with rasterio.open(root / t["truth"]["landcover"]) as src:
            n = int(round(1000.0 / cell))
            img = src.read(1, out_shape=(n, n), resampling=Resampling.mode)
            _place(out, img, tuple(src.bounds), bounds, cell)
    return out


def sar_mosaic(root: Path, manifest: dict, cell: float) -> np.ndarray:
    """(H, W) float32 amplitude in dB of all scenes on the region grid (NaN: no scene)."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    grid = _grid(manifest["region_bounds"], cell)
    total = np.zeros(grid.shape, dtype=np.float64)
    count = np.zeros(grid.shape, dtype=np.int32)
    for scene in manifest["sar"]["scenes"]:
        with rasterio.open(root / scene["image"]) as src:
            dst = np.zeros(grid.shape, dtype=np.float32)
            reproject(
                rasterio.band(src, 1),
                dst,
                src_nodata=0,
                dst_nodata=0,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                resampling=Resampling.average,
            )
        valid = dst > 0
        total[valid] += 20 * np.log10(dst[valid])
        count[valid] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def draw_preview(world_dir: str | Path, png_path: str | Path, dpi: int = 70) -> Path:
    """Draw the overview of the world in ``world_dir`` to ``png_path`` (a small PNG)."""
    import geopandas as gpd
    import pyogrio
    from PIL import Image

    root = Path(world_dir)
    manifest = read_manifest(root)
    if manifest is None:
        raise DataError(f"{root}: no world.json; generate the world first (geosynth demo-world)")
    catalog = load_catalog()
    cell = PREVIEW_CELL_M
    left, bottom, right, top = manifest["region_bounds"]
    extent = (left, right, bottom, top)
    palette = np.array(catalog.classes.palette(), dtype=np.float64) / 255.0
    cmap = listed_colormap(palette)

    dop = dop_mosaic(root, manifest, cell)
    dsm = lidar_surface(root, manifest, cell)
    truth = truth_mosaic(root, manifest, cell)
    sar = sar_mosaic(root, manifest, cell)

    aspect = (top - bottom) / (right - left)
    fig, axes = subplots(2, 4, figsize=(16, 8 * aspect + 1.2), dpi=dpi)
    ax = axes.ravel()
    ax[0].imshow(dop[:3].transpose(1, 2, 0), extent=extent)
    ax[0].set_title("orthophoto (R, G, B)")
    ax[1].imshow(dop[[3, 0, 1]].transpose(1, 2, 0), extent=extent)
    ax[1].set_title("orthophoto (NIR, R, G)")
    ax[2].imshow(_hillshade(dsm, cell), extent=extent, cmap="gray", vmin=0, vmax=1)
    ax[2].imshow(dsm, extent=extent, cmap="terrain", alpha=0.45)
    ax[2].set_title("lidar: highest return (white: none)")
    layers = [name for name, _ in pyogrio.list_layers(root / manifest["landcover"]["path"])]
    for name in layers:
        frame = gpd.read_file(root / manifest["landcover"]["path"], layer=name)
        colours = []
        for objart, veg in zip(frame["OBJART_TXT"], frame["VEG"], strict=True):
            key = catalog.atkis.types.get(objart)
            rule = catalog.atkis.by_attribute.get(objart)
            if rule is not None:
                key = rule.values.get(str(veg), rule.default)
            colours.append(palette[catalog.classes.id_of(key)] if key else (1.0, 1.0, 1.0))
        frame.plot(ax=ax[3], color=colours, edgecolor="black", linewidth=0.2)
    ax[3].set_title("ATKIS-like land cover (white: unmapped type)")
    _draw_osm(ax[4], root / manifest["osm"]["path"], palette, catalog)
    ax[4].set_title("OpenStreetMap")
    ax[5].imshow(
        truth, extent=extent, cmap=cmap, vmin=-0.5, vmax=len(palette) - 0.5, interpolation="nearest"
    )
    ax[5].set_title("true land cover (ATKIS + OSM)")
    ax[6].imshow(
        sar,
        extent=extent,
        cmap="gray",
        vmin=np.nanpercentile(sar, 2),
        vmax=np.nanpercentile(sar, 98),
    )
    for scene in manifest["sar"]["scenes"]:
        from shapely import wkt

        xs, ys = wkt.loads(scene["footprint_wkt"]).exterior.xy
        ax[6].plot(xs, ys, linewidth=1)
    ax[6].set_title("TerraSAR-X amplitude (dB), footprints")
    _legend(ax[7], catalog)
    for a in ax[:7]:
        a.set_xlim(left, right)
        a.set_ylim(bottom, top)
        a.set_xticks([])
        a.set_yticks([])
        a.set_xlabel("")
        a.set_ylabel("")
        a.set_aspect("equal")
    fig.suptitle(
        f"geosynth demo world: {manifest['params']['tiles'][0]} x "
        f"{manifest['params']['tiles'][1]} tiles of 1 km, seed {manifest['params']['seed']}"
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    image = Image.open(buffer).convert("RGB").quantize(colors=128, dither=Image.Dither.NONE)
    png_path = Path(png_path)
    with atomic_path(png_path) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    return png_path


def _hillshade(dsm: np.ndarray, cell: float) -> np.ndarray:
    """Grey shading of a surface, lit from the north-west; NaN stays NaN."""
    filled = np.where(np.isnan(dsm), np.nanmin(dsm), dsm)
    d_row, d_col = np.gradient(filled, cell)
    lit = (d_col * -0.5 + d_row * -0.5 + 1.0) / np.sqrt(d_col**2 + d_row**2 + 1.0)
    return np.where(np.isnan(dsm), np.nan, np.clip(lit, 0, 1))


def _draw_osm(ax, path: Path, palette: np.ndarray, catalog) -> None:
    import osmnx as ox

    features = ox.features_from_xml(path).to_crs(catalog.grid.crs)
    rules = catalog.osm
    ids = {key: catalog.classes.id_of(key) for key in catalog.classes.keys}
    if "building" in features:
        buildings = features[features["building"].notna()]
        buildings.plot(ax=ax, color=palette[ids[rules.building_class]], linewidth=0)
    if "highway" in features:
        for value, group in features[features["highway"].notna()].groupby("highway"):
            key = rules.highways.classes.get(value, rules.highways.default_class)
            width = rules.highways.widths_m.get(value, 3.0)
            group.plot(ax=ax, color=palette[ids[key]], linewidth=max(0.4, width / 8))
    if "railway" in features:
        features[features["railway"].notna()].plot(
            ax=ax, color=palette[ids[rules.railways.default_class]], linewidth=0.8
        )


def _legend(ax, catalog) -> None:
    handles = [
        patch(color=np.array(c.rgb) / 255.0, label=f"{c.id} {c.name}")
        for c in catalog.classes.classes
    ]
    handles.append(patch(facecolor="white", edgecolor="black", label="unmapped ATKIS type"))
    ax.legend(handles=handles, loc="center", frameon=False, fontsize=9)
    ax.axis("off")
