"""Write the demo world in the providers' formats: JPEG2000 and LAZ per tile with the
folder listings (``index.json``, ``index.xml``) and orthophoto metadata NRW publishes (or in
zip packages), the ATKIS-like areas as the state-wide shapefile package, OSM XML, TerraSAR-X
product folders, and the ground truth.

Every writer is deterministic: zip members carry a fixed date, the shapefiles' DBF headers
a fixed date, the LAS header a fixed creation date, the listings and XML files no clock
time, so one seed gives the same bytes on every run.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import numpy as np

from geosynth.demo.lidar import PointCloud
from geosynth.demo.scene import WORLD_CRS, World
from geosynth.grid import RasterGrid, TileId
from geosynth.io import write_geotiff

ZIP_DATE = (2023, 7, 1, 0, 0, 0)
OSM_TIMESTAMP = "2023-07-01T00:00:00Z"
LIDAR_DATE = dt.date(2021, 3, 15)
JP2_OPTIONS = {"QUALITY": 100, "REVERSIBLE": "YES", "GMLJP2": "YES", "GeoJP2": "YES"}
LISTING_TIMESTAMP = "2023-07-01T00:00:00"
# ATKIS shape packages split the areas into thematic layers (the AdV shape profile: see the
# catalog's sources.landcover.record); the demo world has objects in these
ATKIS_LAYERS = {
    "sie02_f": ("AX_Wohnbauflaeche", "AX_IndustrieUndGewerbeflaeche", "AX_Friedhof"),
    "ver01_f": ("AX_Strassenverkehr", "AX_Platz"),
    "ver03_f": ("AX_Bahnverkehr",),
    "veg01_f": ("AX_Landwirtschaft",),
    "veg02_f": ("AX_Wald",),
    "veg03_f": ("AX_Gehoelz",),
    "gew01_f": ("AX_Fliessgewaesser", "AX_StehendesGewaesser"),
}


def write_zip(path: Path, members: list[tuple[str, Path]], compress: bool = False) -> Path:
    """A zip package of ``(name in the archive, file)`` pairs with fixed member dates."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, file in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, file.read_bytes())
    return path


def write_index(folder: Path, dataset: str) -> list[Path]:
    """``folder/index.json`` and ``folder/index.xml``: the files of ``folder`` as NRW's server
    lists them (``datasets`` -> ``files`` -> name, size, timestamp; ``<file name=.. size=..
    timestamp=../>``), and the subfolders; the XML is also what the folder URL answers with."""
    import json
    from xml.sax.saxutils import quoteattr

    skip = {"index.json", "index.xml"}
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and p.name not in skip]
    folders = [p.name for p in sorted(folder.iterdir()) if p.is_dir()]
    entries = [{"name": p.name, "size": p.stat().st_size, "timestamp": LISTING_TIMESTAMP}
               for p in files]  # fmt: skip
    data = {"datasets": [{"name": dataset, "files": entries}]}
    if folders:
        data["folders"] = [{"name": f} for f in folders]
    (folder / "index.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<opengeodata>"]
    if folders:
        lines += ["<folders>", *(f"<folder name={quoteattr(f)}/>" for f in folders), "</folders>"]
    lines += [f"<datasets><dataset name={quoteattr(dataset)}><files>"]
    lines += [
        f'<file name={quoteattr(e["name"])} size="{e["size"]}" timestamp="{e["timestamp"]}"/>'
        for e in entries
    ]
    lines += ["</files></dataset></datasets>", "</opengeodata>"]
    (folder / "index.xml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return [folder / "index.json", folder / "index.xml"]


DOP_META_COLUMNS = (
    "Kachelname;Erfassungsmethode;Aktualitaet;Bildflugnummer;Kamera_Sensor;Bodenpixelgroesse;"
    "Spektralkanaele;Koordinatenreferenzsystem_Lage;Koordinatenreferenzsystem_Hoehe;"
    "Bezugsflaeche;Koordinatenursprung_East;Koordinatenursprung_North;Anzahl_Spalten;"
    "Anzahl_Zeilen;Farbtiefe;Standardabweichung;Dateiformat;Hintergrund;Quelldatenqualitaet;"
    "Kompression;Komprimierung;Belaubungszustand;Bemerkungen"
)


def write_dop_metadata(path: Path, tile_records: list[dict], resolution_m: float) -> Path:
    """NRW's orthophoto metadata: ``dop_nw.csv`` (five preamble lines, then one line per tile
    under NRW's header: ``Kachelname``, ``Aktualitaet``, ``Bildflugnummer``, ...,
    semicolon-separated) in a zip."""
    lines = [
        "Metadaten der DOP10 fuer die Datenabgabe (geosynth demo world)",
        "Land;Nordrhein-Westfalen",
        "Eigentuemer;geosynth (synthetic)",
        "Stand;2023-07-01",
        "Version Regelwerk;1.0",
        DOP_META_COLUMNS,
    ]
    for r in sorted(tile_records, key=lambda r: r["dop_member"]):
        name = r["dop_member"].rsplit(".", 1)[0]
        e, n = (int(v) * 1000 for v in r["id"].split("_"))
        side = round(1000 / resolution_m)
        lines.append(
            f"{name};0;{r['flight_date']};{r['flight_number']};synthetic;{resolution_m:g};RGBI;"
            f"25832;7837;bDOM;{e};{n};{side};{side};8;20;JPEG2000;weiss;;verlustfrei;;"
            f"{'belaubt' if r['leaf_on'] else 'unbelaubt'};"
        )
    csv_path = path.with_name("dop_nw.csv")
    csv_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_zip(path, [("dop_nw.csv", csv_path)])
    csv_path.unlink()
    return path


def write_jp2(path: Path, image: np.ndarray, grid: RasterGrid) -> Path:
    """A 4-band (R, G, B, NIR) uint8 JPEG2000, losslessly coded, georeferenced (GeoJP2 + GMLJP2)."""
    import rasterio

    bands, height, width = image.shape
    with rasterio.open(
        path,
        "w",
        driver="JP2OpenJPEG",
        width=width,
        height=height,
        count=bands,
        dtype="uint8",
        crs=grid.crs,
        transform=grid.transform,
        **JP2_OPTIONS,
    ) as dst:
        dst.write(image)
    return path


def write_laz(path: Path, cloud: PointCloud, tile: TileId) -> Path:
    """A LAS 1.2, point format 1 file (LAZ-compressed by the suffix) with the CRS as GeoTIFF keys."""
    import laspy
    from pyproj import CRS

    header = laspy.LasHeader(point_format=1, version="1.2")
    header.offsets = np.array([tile.e_km * 1000.0, tile.n_km * 1000.0, 0.0])
    header.scales = np.array([0.01, 0.01, 0.01])
    header.add_crs(CRS.from_string(WORLD_CRS))
    header.system_identifier = "geosynth demo-world"
    header.generating_software = "geosynth demo-world"
    header.creation_date = LIDAR_DATE
    header.global_encoding.gps_time_type = laspy.header.GpsTimeType.STANDARD
    las = laspy.LasData(header)
    las.x, las.y, las.z = cloud.x, cloud.y, cloud.z
    for name in (
        "intensity",
        "return_number",
        "number_of_returns",
        "scan_direction_flag",
        "edge_of_flight_line",
        "classification",
        "scan_angle_rank",
        "point_source_id",
        "gps_time",
    ):
        setattr(las, name, getattr(cloud, name))
    las.write(str(path))
    return path


def write_landcover(path: Path, world: World) -> Path:
    """ATKIS-like area objects as the state-wide package NRW publishes: one zip of
    shapefiles, a thematic layer each (:data:`ATKIS_LAYERS`), EPSG:25832."""
    import tempfile

    import geopandas as gpd

    by_type: dict[str, list] = {}
    for f in world.atkis:
        by_type.setdefault(f.objart_txt, []).append(f)
    members = []
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        serial = 0
        for layer, types in ATKIS_LAYERS.items():
            rows = [f for t in types for f in by_type.get(t, [])]
            if not rows:
                continue
            ids = [f"DENW99DM{serial + i:08d}" for i in range(len(rows))]
            serial += len(rows)
            frame = gpd.GeoDataFrame(
                {
                    "OBJID": ids,
                    "OBJART": [f.objart for f in rows],
                    "OBJART_TXT": [f.objart_txt for f in rows],
                    "VEG": [f.veg for f in rows],
                    "AKTUALIT": ["2023-01-01"] * len(rows),
                },
                geometry=[f.polygon for f in rows],
                crs=WORLD_CRS,
            )
            shp = Path(tmp) / f"{layer}.shp"
            frame.to_file(shp, driver="ESRI Shapefile", engine="pyogrio", encoding="UTF-8")
            _fix_dbf_date(shp.with_suffix(".dbf"))
            members += [(p.name, p) for p in sorted(Path(tmp).glob(f"{layer}.*"))]
        write_zip(path, members, compress=True)
    return path


def _fix_dbf_date(dbf: Path) -> None:
    """A DBF header carries the day it was written (bytes 1-3, years since 1900): set it to
    the world's fixed date, so the bytes do not depend on the day."""
    year, month, day = ZIP_DATE[:3]
    with open(dbf, "r+b") as f:
        f.seek(1)
        f.write(bytes([year - 1900, month, day]))


def write_osm(path: Path, world: World) -> Path:
    """OSM XML (API 0.6, WGS84): buildings (one as a multipolygon with a courtyard), roads, rails."""
    import xml.etree.ElementTree as ET

    from pyproj import Transformer

    to_wgs = Transformer.from_crs(WORLD_CRS, "EPSG:4326", always_xy=True)
    meta = {
        "version": "1",
        "timestamp": OSM_TIMESTAMP,
        "changeset": "1",
        "uid": "1",
        "user": "geosynth",
        "visible": "true",
    }
    root = ET.Element("osm", {"version": "0.6", "generator": "geosynth demo-world"})
    left, bottom, right, top = world.params.domain_bounds
    (w, e), (s, n) = to_wgs.transform([left, right], [bottom, top])
    ET.SubElement(
        root,
        "bounds",
        {
            "minlat": f"{min(s, n):.7f}",
            "minlon": f"{min(w, e):.7f}",
            "maxlat": f"{max(s, n):.7f}",
            "maxlon": f"{max(w, e):.7f}",
        },
    )
    nodes, ways, relations = [], [], []
    next_id = {"node": 100000001, "way": 200000001, "relation": 300000001}

    def new_id(kind: str) -> int:
        next_id[kind] += 1
        return next_id[kind] - 1

    def way(coords, tags: dict, closed: bool) -> int:
        coords = list(coords)
        if closed:
            coords = coords[:-1]  # shapely repeats the first vertex
        xs, ys = to_wgs.transform([c[0] for c in coords], [c[1] for c in coords])
        refs = []
        for lon, lat in zip(xs, ys, strict=True):
            nid = new_id("node")
            nodes.append(
                ET.Element(
                    "node", {"id": str(nid), **meta, "lat": f"{lat:.7f}", "lon": f"{lon:.7f}"}
                )
            )
            refs.append(nid)
        if closed:
            refs.append(refs[0])
        wid = new_id("way")
        el = ET.Element("way", {"id": str(wid), **meta})
        for ref in refs:
            ET.SubElement(el, "nd", {"ref": str(ref)})
        for k, v in tags.items():
            ET.SubElement(el, "tag", {"k": k, "v": str(v)})
        ways.append(el)
        return wid

    for b in world.buildings:
        if not b.in_osm:
            continue
        tags = dict(b.tags)  # no height or levels: heights belong to the surface only
        if b.polygon.interiors:
            outer = way(b.polygon.exterior.coords, {}, closed=True)
            inners = [way(r.coords, {}, closed=True) for r in b.polygon.interiors]
            rel = ET.Element("relation", {"id": str(new_id("relation")), **meta})
            ET.SubElement(rel, "member", {"type": "way", "ref": str(outer), "role": "outer"})
            for ref in inners:
                ET.SubElement(rel, "member", {"type": "way", "ref": str(ref), "role": "inner"})
            for k, v in {"type": "multipolygon", **tags}.items():
                ET.SubElement(rel, "tag", {"k": k, "v": str(v)})
            relations.append(rel)
        else:
            way(b.polygon.exterior.coords, tags, closed=True)
    for road in world.roads:
        tags = {"highway": road.highway}
        if road.name:
            tags["name"] = road.name
        if road.highway == "track":
            tags["tracktype"] = "grade2"
        else:
            tags["surface"] = "asphalt"
        way(road.line.coords, tags, closed=False)
    for line in world.railways:
        way(
            line.coords,
            {"railway": "rail", "usage": "main", "gauge": "1435", "electrified": "contact_line"},
            closed=False,
        )
    root.extend(nodes + ways + relations)
    ET.indent(root)
    path.write_bytes(
        b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"
    )
    return path


def write_sar_product(
    parent: Path, spec, image: np.ndarray, grid: RasterGrid, annotation: bytes
) -> Path:
    """``<parent>/<product>/`` with ``IMAGEDATA/<image>.tif`` (uint16, no nodata tag) and the XML."""
    import rasterio

    folder = parent / spec.name
    (folder / "IMAGEDATA").mkdir(parents=True)
    with rasterio.open(
        folder / "IMAGEDATA" / spec.image_name,
        "w",
        driver="GTiff",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype="uint16",
        crs=grid.crs,
        transform=grid.transform,
    ) as dst:
        dst.write(image, 1)
    (folder / f"{spec.name}.xml").write_bytes(annotation)
    return folder


TRUTH_README = """\
Ground truth of the geosynth demo world. NOT provider data.

These rasters are what the demo world really is, for tests of the build
stages and for the fusion experiment; the build never reads them.

<E>_<N>_landcover.tif  uint8, 1 m: the 10 GeoNRW classes (0 unlabelled) that
                       the land-cover vectors and OSM of this world yield
                       under data_catalog.yaml (pixel centres burned)
<E>_<N>_dsm.tif        float32, 1 m: surface height a.s.l. (terrain + roofs
                       + tree crowns; water surface over water)
<E>_<N>_dtm.tif        float32, 1 m: terrain height a.s.l.
"""


def write_truth(
    folder: Path,
    tile: TileId,
    landcover: np.ndarray,
    dsm: np.ndarray,
    dtm: np.ndarray,
    grid: RasterGrid,
) -> list[Path]:

    folder.mkdir(parents=True, exist_ok=True)
    layers = (
        ("landcover", landcover, "class id"),
        ("dsm", dsm.astype(np.float32), "surface height (m)"),
        ("dtm", dtm.astype(np.float32), "terrain height (m)"),
    )
    return [  # truth files stay plain tiled GeoTIFFs: the world's bytes do not change
        write_geotiff(folder / f"{tile}_{name}.tif", values, grid, descriptions=(d,), cog=False)
        for name, values, d in layers
    ]
