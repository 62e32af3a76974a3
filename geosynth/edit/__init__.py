"""A tile's inputs and their edits, in numpy: the torch-free half of synthesis and editing.

- :mod:`~geosynth.edit.tile`: :class:`~geosynth.edit.tile.TileInputs`, one tile's arrays
  from a store or from a user's GeoTIFFs, in the store's form;
- :mod:`~geosynth.edit.rules`: the edits themselves, flooding below a height (the paper's
  Fig. 9) and swapping classes, with the label map and DEM changed together.

:mod:`geosynth.ml.synthesis` runs the edited inputs through a generator.
"""

from geosynth.edit.rules import (
    RAISED_CLASSES,
    EditResult,
    area_mask,
    flood,
    flood_mask,
    ground_estimate,
    parse_levels,
    swap_classes,
)
from geosynth.edit.tile import TileInputs, from_files, from_store

__all__ = [
    "RAISED_CLASSES",
    "EditResult",
    "TileInputs",
    "area_mask",
    "flood",
    "flood_mask",
    "from_files",
    "from_store",
    "ground_estimate",
    "parse_levels",
    "swap_classes",
]
