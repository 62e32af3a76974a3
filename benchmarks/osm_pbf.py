"""OSM for many tiles: osmnx on the whole XML per tile against one PBF cut read per tile.

A seeded synthetic town covering 16 tiles (4 x 4 km in EPSG:25832: a street
grid of residential roads, a few primary roads, a motorway, service roads,
footways, a railway, blocks of buildings, some with courtyards as
multipolygon relations, tagged crossing nodes) is written by pyosmium twice,
as ``.osm.pbf`` and as ``.osm`` XML, from the same objects. Both paths make the
same land cover (checked on one tile before timing). Contenders, each run in a
fresh process (``multiprocessing`` spawn) so that its peak RSS (``VmHWM``)
is its own:

* XML: ``landcover_stage(grid, osm=region.osm)``: osmnx parses the whole
  XML for a tile (what a per-tile worker does; a worker doing several tiles
  keeps the parse in its cache);
* PBF: ``cut_osm`` once for the 16 tiles (one streaming read), then
  ``landcover_stage(grid, osm=region.osmcut.gpkg)`` per tile: only that
  tile's features are read, through the cut's R-tree;
* PBF without a cut: ``landcover_stage(grid, osm=region.osm.pbf)`` streams
  the whole PBF per tile (fine for one tile, the reason to cut for many).

Printed: time and peak RSS per tile (a tile in a fresh process, and workers
doing 1, 4 and 16 tiles), the XML/PBF ratios, and the import baseline (a
process that only imports the stage). Other processes share the CPU, so the
figures are indicative. Run: python benchmarks/osm_pbf.py [--buildings 1500]
[--fresh-tiles 4] [--keep DIR]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import multiprocessing  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ORIGIN = (350, 5650)  # south-west tile, km in EPSG:25832
SIDE = 4  # tiles per side
CRS = "EPSG:25832"
TILE_M = 1000.0
STREET_SPACING_M = 125.0


def tile_names() -> list[str]:
    return [f"{ORIGIN[0] + i}_{ORIGIN[1] + j}" for j in range(SIDE) for i in range(SIDE)]


# --------------------------------------------------------------------------- the synthetic town


class TownWriter:
    """Collects OSM objects with coordinates in EPSG:25832, writes them with pyosmium."""

    def __init__(self):
        self.xy: list[tuple[float, float]] = []
        self.node_tags: dict[int, dict[str, str]] = {}
        self.ways: list[tuple[list[int], dict[str, str]]] = []
        self.relations: list[tuple[list[tuple[str, int, str]], dict[str, str]]] = []

    def nodes(self, coords) -> list[int]:
        first = len(self.xy) + 1
        self.xy.extend(map(tuple, coords))
        return list(range(first, len(self.xy) + 1))

    def way(self, coords, tags=None, closed=False) -> int:
        refs = self.nodes(coords)
        if closed:
            refs.append(refs[0])
        self.ways.append((refs, tags or {}))
        return len(self.ways)

    def write(self, path: Path) -> Path:
        import osmium
        from osmium.osm.mutable import Node, Relation, Way
        from pyproj import Transformer

        xy = np.asarray(self.xy)
        lon, lat = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(*xy.T)
        path.unlink(missing_ok=True)
        with osmium.SimpleWriter(str(path)) as writer:
            for i, (x, y) in enumerate(zip(lon, lat, strict=True), start=1):
                writer.add_node(Node(id=i, location=(x, y), tags=self.node_tags.get(i, {})))
            for i, (refs, tags) in enumerate(self.ways, start=1):
                writer.add_way(Way(id=i, nodes=refs, tags=tags))
            for i, (members, tags) in enumerate(self.relations, start=1):
                writer.add_relation(Relation(id=i, members=members, tags=tags))
        return path


def rect(x, y, w, h):
    return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]


def make_town(buildings_per_tile: int, seed: int) -> TownWriter:
    """Street grid, buildings in the blocks (one in 20 with a courtyard), a railway, crossings."""
    rng = np.random.default_rng(seed)
    town = TownWriter()
    left, bottom = ORIGIN[0] * TILE_M, ORIGIN[1] * TILE_M
    size = SIDE * TILE_M
    lines = np.arange(STREET_SPACING_M / 2, size, STREET_SPACING_M)
    for k, offset in enumerate(lines):
        kind = "primary" if k % 8 == 3 else "residential"
        steps = np.linspace(0, size, 33)
        for horizontal in (True, False):
            wobble = rng.normal(0, 1.5, len(steps))
            coords = (
                np.column_stack([left + steps, bottom + offset + wobble])
                if horizontal
                else np.column_stack([left + offset + wobble, bottom + steps])
            )
            way = town.way(coords, {"highway": kind, "name": f"street {k}"})
            if k % 4 == 0:  # crossings: tagged nodes on the street
                for ref in town.ways[way - 1][0][::6]:
                    town.node_tags[ref] = {"highway": "crossing"}
    town.way(
        [(left, bottom + 0.37 * size), (left + size, bottom + 0.41 * size)], {"highway": "motorway"}
    )
    town.way(
        [(left + 0.61 * size, bottom), (left + 0.58 * size, bottom + size)], {"railway": "rail"}
    )
    n = buildings_per_tile * SIDE * SIDE
    xs = left + rng.uniform(5, size - 40, n)
    ys = bottom + rng.uniform(5, size - 40, n)
    sizes = rng.uniform(6, 30, (n, 2))
    for i in range(n):
        ring = rect(xs[i], ys[i], *sizes[i])
        if i % 20 == 0:
            w, h = sizes[i]
            outer = town.way(ring, closed=True)
            inner = town.way(rect(xs[i] + w / 3, ys[i] + h / 3, w / 3, h / 3), closed=True)
            members = [("w", outer, "outer"), ("w", inner, "inner")]
            town.relations.append((members, {"type": "multipolygon", "building": "apartments"}))
        else:
            town.way(ring, {"building": "house" if i % 3 else "yes"}, closed=True)
        if i % 10 == 0:  # a service road or a footway to the door
            kind = "service" if i % 20 else "footway"
            town.way([(xs[i], ys[i]), (xs[i] - 15, ys[i] - 20)], {"highway": kind})
    return town


# --------------------------------------------------------------------------- in a fresh process


def _peak_mb() -> float:
    """This process's peak RSS: ``VmHWM`` (Linux keeps ``ru_maxrss`` across exec, so a
    spawned child would report its parent's peak), else ``ru_maxrss``."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child_import() -> tuple[float, float]:
    import osmnx  # noqa: F401
    import pyogrio  # noqa: F401

    import geosynth.sources.landcover  # noqa: F401
    import geosynth.sources.osm.pbf  # noqa: F401

    return 0.0, _peak_mb()


def child_tiles(osm: str, tiles: list[str]) -> tuple[float, float]:
    """Land cover for ``tiles`` from ``osm`` in this process: (seconds, peak RSS MB)."""
    import osmnx  # noqa: F401  (imports are not timed)
    import pyogrio  # noqa: F401

    import geosynth.sources.osm.pbf  # noqa: F401
    from geosynth.catalog import load_catalog
    from geosynth.grid import RasterGrid
    from geosynth.sources.landcover import landcover_stage

    catalog = load_catalog()
    t0 = time.perf_counter()
    for name in tiles:
        landcover_stage(RasterGrid.for_tile(name, catalog.grid), osm=[osm], catalog=catalog)
    return time.perf_counter() - t0, _peak_mb()


def child_cut(pbf: str, out: str) -> tuple[float, float, int]:
    from geosynth.catalog import load_catalog
    from geosynth.grid import RasterGrid
    from geosynth.sources.osm.pbf import cut_osm

    catalog = load_catalog()
    tiles = {name: RasterGrid.for_tile(name, catalog.grid) for name in tile_names()}
    t0 = time.perf_counter()
    report = cut_osm(pbf, tiles, None, catalog.osm, out)
    return time.perf_counter() - t0, _peak_mb(), report.total


def fresh(func, *args) -> tuple:
    """Run ``func(*args)`` in a new spawned process; what it returns (seconds, peak RSS MB, ...)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(func, *args).result()


def check_same_land_cover(xml: Path, pbf: Path, cut: Path, tile: str) -> None:
    from geosynth.catalog import load_catalog
    from geosynth.grid import RasterGrid
    from geosynth.sources.landcover import landcover_stage

    grid = RasterGrid.for_tile(tile, load_catalog().grid)
    arrays = [landcover_stage(grid, osm=[p]).array for p in (xml, pbf, cut)]
    if not (np.array_equal(arrays[0], arrays[1]) and np.array_equal(arrays[0], arrays[2])):
        raise SystemExit(f"tile {tile}: XML, PBF and cut disagree: no comparison")
    print(
        f"tile {tile}: XML, PBF and cut give the same land cover "
        f"({len(np.unique(arrays[0]))} classes)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buildings", type=int, default=1500, help="buildings per tile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fresh-tiles", type=int, default=4,
        help="tiles timed one per fresh process on each path (16 for all; the workers "
        "below do all 16 anyway)",
    )  # fmt: skip
    parser.add_argument("--keep", type=Path, help="write the region files here and keep them")
    args = parser.parse_args()
    names = tile_names()

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        town = make_town(args.buildings, args.seed)
        xml = town.write(folder / "region.osm")
        pbf = town.write(folder / "region.osm.pbf")
        cut = folder / "region.osmcut.gpkg"
        print(
            f"region: {len(names)} tiles ({SIDE} x {SIDE} km), {len(town.xy):,} nodes, "
            f"{len(town.ways):,} ways, {len(town.relations):,} relations; "
            f"XML {xml.stat().st_size / 2**20:.1f} MB, PBF {pbf.stat().st_size / 2**20:.1f} MB "
            f"(written in {time.perf_counter() - t0:.1f} s)"
        )

        _, base_mb = fresh(child_import)
        cut_s, cut_mb, cut_n = fresh(child_cut, str(pbf), str(cut))
        print(
            f"cut for {len(names)} tiles: {cut_s:.2f} s ({cut_n / cut_s:,.0f} features/s), "
            f"peak RSS {cut_mb:.0f} MB, cut file {cut.stat().st_size / 2**20:.1f} MB"
        )
        check_same_land_cover(xml, pbf, cut, names[5])

        sample = names[:: max(1, len(names) // args.fresh_tiles)][: args.fresh_tiles]
        xml_runs = [fresh(child_tiles, str(xml), [n]) for n in sample]
        cut_runs = [fresh(child_tiles, str(cut), [n]) for n in sample]
        pbf_runs = [fresh(child_tiles, str(pbf), [n]) for n in sample[:1]]
        print(f"\nimport baseline (a process that only imports the stage): {base_mb:.0f} MB")
        print(
            f"one tile per fresh process      {'time/tile':>10} {'peak RSS':>9}  (tiles)"
        )  # fmt: skip

        def row(label, runs):
            t, mb = np.mean([r[0] for r in runs]), np.max([r[1] for r in runs])
            print(f"  {label:<30}{t:8.2f} s {mb:6.0f} MB  ({len(runs)})")
            return t, mb

        t_xml, mb_xml = row("XML, osmnx whole file", xml_runs)
        t_cut, mb_cut = row("PBF cut, read per tile", cut_runs)
        row("PBF streamed per tile, no cut", pbf_runs)
        t_cut_all = t_cut + cut_s / len(names)
        print(
            f"  ratio XML / cut: time {t_xml / t_cut:.1f}x ({t_xml / t_cut_all:.1f}x with the cut "
            f"pass shared by {len(names)} tiles), peak RSS {mb_xml / mb_cut:.1f}x "
            f"({(mb_xml - base_mb) / max(mb_cut - base_mb, 1):.1f}x above the import baseline)"
        )

        print(f"\none worker doing k tiles        {'time/tile':>10} {'peak RSS':>9}")
        for k in (1, 4, 16):
            for label, osm in (("XML", xml), ("PBF cut", cut)):
                seconds, mb = fresh(child_tiles, str(osm), names[:k])
                print(f"  {label:<8} k = {k:<2}{'':16}{seconds / k:8.2f} s {mb:6.0f} MB")


if __name__ == "__main__":
    main()
