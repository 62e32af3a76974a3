"""The demo world: a procedural NRW-like region written as the providers' raw files.

:func:`generate_world` lays out one latent scene (:mod:`geosynth.demo.scene`)
and renders it into every provider format, so that
``geosynth build-geonrw --region demo`` runs exactly the code a real region
runs. Layout under ``out_dir``::

    dop/dop10rgbi_32_<E>_<N>_1_nw_<year>.jp2      one orthophoto per tile (the year differs)
    dop/dop_meta.zip                             dop_nw.csv: flight date per Kachelname
    dop/index.html                               the folder listing, as NRW's server shows it
    lidar/3dm_32_<E>_<N>_1_nw_<year>.laz          one point cloud per tile
    lidar/index.html                             its folder listing
    landcover/basis-dlm_<AGS>_<Name>_EPSG25832.gpkg  ATKIS-like areas (OBJART_TXT, VEG)
    osm/demo_<AGS>.osm                           OSM XML (buildings, highways, railways)
    sar/TSX1_SAR__EEC_SE___SL_S_SRA_<start>_<stop>/  TerraSAR-X EEC product folders
    truth/<E>_<N>_{landcover,dsm,dtm}.tif        ground truth (NOT provider data)
    world.json                                   parameters and every file written

That is NRW's layout today (the catalog's ``tiles`` layout); with
``layout="packages"`` the orthophotos and point clouds are written as the
per-municipality zips the paper's authors downloaded in 2020 instead
(``dop/dop_<AGS>_<Name>_EPSG25832_JPEG2000.zip``,
``lidar/3dm_l_las_<AGS>_<Name>_EPSG25832.zip``). AGS and package name come
from the catalog's region ``demo``, the file names from the catalog's member
patterns; serve the folder over HTTP and ``geosynth download`` reads it as it
reads NRW's server. The folder is generated under a
temporary name and renamed when complete, so a killed generation never looks
complete; :func:`ensure_world` regenerates whatever is absent or incomplete.
"""

from geosynth.demo.generate import GENERATOR_VERSION, MANIFEST
from geosynth.demo.world import (
    check_out_dir,
    ensure_world,
    generate_world,
    read_manifest,
    read_tile_file,
    tile_file,
    world_params,
    world_problems,
    world_summary,
)

__all__ = [
    "GENERATOR_VERSION",
    "MANIFEST",
    "check_out_dir",
    "ensure_world",
    "generate_world",
    "read_manifest",
    "read_tile_file",
    "tile_file",
    "world_params",
    "world_problems",
    "world_summary",
]
