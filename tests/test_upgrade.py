"""upgrade-store: a version 1 store (written here with plain zarr, as its contract says) becomes
a version 2 store bit-exactly, resumably; version 1 stores are refused naming the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import StoreError
from geosynth.ingest.upgrade import upgrade_store
from geosynth.store import open_store, verify

N, H, W = 4, 40, 40
IDS = ["356_5645", "357_5645", "356_5646", "357_5646"]


def write_v1_store(path, seed=0):
    """A version 1 store by its README contract: every modality one array with a tile axis."""
    rng = np.random.default_rng(seed)
    g = zarr.open_group(path, mode="w")
    classes = [{"id": c.id, "key": c.key, "name": c.name, "color": c.color}
               for c in load_catalog().classes.classes]  # fmt: skip

    def array(name, data, dims, chunks, fill=0, attrs=None):
        a = g.create_array(name, shape=data.shape, chunks=chunks, dtype=data.dtype,
                           fill_value=fill, dimension_names=dims, attributes=attrs or {})  # fmt: skip
        a[...] = data

    values = {
        "rgb": rng.integers(0, 256, (N, 3, H, W), dtype=np.uint8),
        "dem": rng.normal(70, 5, (N, 1, H, W)).astype("float32"),
        "seg": rng.integers(0, 11, (N, H, W), dtype=np.uint8),
        "sar": rng.random((N, 1, H, W), dtype=np.float32),
        "sar_valid": rng.random((N, H, W)) > 0.2,
    }
    values["sar"][2] = 0.0  # tile 2: no SAR
    for name, data in values.items():
        dims = ("tile", "band", "y", "x") if data.ndim == 4 else ("tile", "y", "x")
        array(
            name,
            data,
            dims,
            (1, *data.shape[1:-2], 16, 16),
            fill=np.nan if data.dtype.kind == "f" else 0,
        )
    present = np.ones((N, 4), bool)
    present[2, 3] = False
    state = np.array([2, 2, 2, 1], np.uint8)  # the last tile was being written
    hist = np.stack([np.bincount(values["seg"][i].ravel(), minlength=11) for i in range(N)])
    transform = np.array([[1000 / W, 0, 356_000 + 1000 * (i % 2), 0, -1000 / H,
                           5_646_000 + 1000 * (i // 2)] for i in range(N)])  # fmt: skip
    for name, data, dims, chunks in (
        ("tile_id", np.array(IDS, dtype=object), ("tile",), (N,)),
        ("region", np.array(["demo"] * N, dtype=object), ("tile",), (N,)),
        ("split", np.array(["train", "train", "test", "train"], dtype=object), ("tile",), (N,)),
        ("crs", np.array([""] * N, dtype=object), ("tile",), (1,)),
        ("sources", np.array([json.dumps({"rgb": [f"t{i}.jp2"]}) for i in range(N)], dtype=object),
         ("tile",), (1,)),
        ("transform", transform, ("tile", "coefficient"), (1, 6)),
        ("present", present, ("tile", "modality"), (1, 4)),
        ("class_hist", hist, ("tile", "class"), (1, 11)),
        ("state", state, ("tile",), (1,)),
    ):  # fmt: skip
        kind = str if data.dtype == object else data.dtype
        a = g.create_array(name, shape=data.shape, chunks=chunks, dtype=kind,
                           fill_value="" if kind is str else 0, dimension_names=dims)  # fmt: skip
        a[...] = data
    g["present"].attrs["geosynth:modalities"] = ["rgb", "dem", "seg", "sar"]
    catalog = load_catalog()
    g.attrs.update({
        "geosynth:store_version": 1, "geosynth:dataset": "geonrw", "proj:code": "EPSG:25832",
        "geosynth:tile_shape": [H, W], "geosynth:classes": classes, "geosynth:unlabelled": 0,
        "geosynth:modalities": {
            "rgb": {"channels": 3, "dtype": "uint8", "bands": ["red", "green", "blue"]},
            "dem": {"channels": 1, "dtype": "float32", "bands": ["height"]},
            "seg": {"channels": 1, "dtype": "uint8", "bands": []},
            "sar": {"channels": 1, "dtype": "float32", "bands": ["HH"]},
        },
        "geosynth:normalisation": {"rgb": "uint8 as delivered"},
        "geosynth:layout": {"chunk": 16, "codec": "blosc-lz4", "level": 5},
        "geosynth:provenance": {"geosynth_version": "0.1", "catalog_sha256": catalog.sha256},
    })  # fmt: skip
    return values, state, present, hist


def test_v1_stores_are_refused_naming_upgrade_store(tmp_path):
    write_v1_store(tmp_path / "old.zarr")
    with pytest.raises(StoreError, match="upgrade-store"):
        open_store(tmp_path / "old.zarr")
    result = CliRunner().invoke(cli, ["info", str(tmp_path / "old.zarr")])
    assert (
        result.exit_code == 1
        and f"geosynth upgrade-store {tmp_path / 'old.zarr'} NEW" in result.output
    )


def test_upgrade_is_bit_exact_and_resumable(tmp_path):
    values, state, present, hist = write_v1_store(tmp_path / "old.zarr")
    new = tmp_path / "new.zarr"

    def stop(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upgrade_store(tmp_path / "old.zarr", new, progress=stop)
    result = CliRunner().invoke(cli, ["-q", "upgrade-store", str(tmp_path / "old.zarr"), str(new)])
    assert result.exit_code == 0, result.output
    assert "2 tile(s) upgraded, 1 already complete" in result.output
    store = open_store(new)
    assert store.tile_ids == IDS and store.attrs["geosynth:store_version"] == 2
    assert store.tiles() == [0, 1, 2]  # the tile that was being written stays planned
    np.testing.assert_array_equal(store.class_hist()[:3], hist[:3])
    np.testing.assert_array_equal(store.present()[:3], present[:3])
    for i in range(3):
        for name in ("rgb", "dem", "seg"):
            np.testing.assert_array_equal(store.read(name, i), values[name][i], err_msg=name)
        if present[i, 3]:
            np.testing.assert_array_equal(store.read("sar", i), values["sar"][i])
            np.testing.assert_array_equal(store.read("sar_valid", i), values["sar_valid"][i])
        assert store.sources(i) == {"rgb": [f"t{i}.jp2"]}
        assert list(store.transform(i))[:6] == pytest.approx(
            [1000 / W, 0, 356_000 + 1000 * (i % 2), 0, -1000 / H, 5_646_000 + 1000 * (i // 2)]
        )
    assert store.layout.chunk == 16 and store.provenance["upgraded_from"]["store_version"] == 1
    problems = verify(store)
    assert len(problems) == 1 and str(problems[0]) == "357_5646: incomplete (planned)"
