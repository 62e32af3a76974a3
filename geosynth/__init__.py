"""geosynth: synthesize optical and SAR imagery from land-cover maps and auxiliary rasters.

The package follows the data flow (``docs/architecture.md`` draws it): raw provider
files (``geosynth.demo`` writes them offline) -> per-source stages (``geosynth.sources``)
-> tiles on one grid (``geosynth.grid``) -> a Zarr store (``geosynth.ingest`` writes it,
``geosynth.store`` reads it) -> torch datasets, networks, training, evaluation and synthesis
(``geosynth.ml``) -> results read without torch (``geosynth.analysis``).
"""

from pathlib import Path

__version__ = "0.1.0"


def bundled_path(name: str) -> Path:
    """A file or folder shipped with geosynth (``data_catalog.yaml``, ``pipelines``): inside
    the package when installed from a wheel, at the top of a source checkout otherwise."""
    package = Path(__file__).resolve().parent
    installed = package / name
    return installed if installed.exists() else package.parent / name
