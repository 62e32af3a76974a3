"""Shared fixtures: no network beyond loopback, a real HTTP server on 127.0.0.1, tiny stores,
single-threaded torch and the real sample files."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import Path

import numpy as np
import pytest

from geosynth.ingest.mirror import MirrorHandler, serve_folder

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata"


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str | bytes) and not isinstance(address, tuple):
        return True  # AF_UNIX paths
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost",)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests talk to 127.0.0.1 only (torchgeo's rule): any other address fails loudly."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def realdata() -> Path:
    """``../shared/realdata`` beside the repository; skipped where it is absent (a user's clone)."""
    if not REALDATA.is_dir():
        pytest.skip(f"real sample files not found at {REALDATA}")
    return REALDATA


# --------------------------------------------------------------------------- loopback HTTP


class RangeHandler(MirrorHandler):
    """geosynth's mirror server (``Range``, folders answering with ``index.xml``) with faults.

    ``server.drop_after`` maps a URL path to a byte count: the first request for that path
    sends only that many bytes of the body and closes the connection (what a flaky link does
    mid-file). ``server.busy`` maps a URL path to ``(status, Retry-After)``: the first request
    gets that answer (a busy server). ``server.ranges`` False ignores ``Range`` headers.
    ``server.redirects`` maps a URL path to where a 302 sends it. ``server.requests`` logs
    ``(path, Range header)``.
    """

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append((self.path, self.headers.get("Range")))
        if self.path in self.server.redirects:
            self.send_response(302)
            self.send_header("Location", self.server.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path in self.server.busy:
            status, wait = self.server.busy.pop(self.path)
            self.send_response(status)
            self.send_header("Retry-After", str(wait))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = self.resolve()
        if path is None:
            self.send_error(404)
            return
        body = self.send_file(path.read_bytes(), "application/octet-stream", self.server.ranges)
        drop = self.server.drop_after.pop(self.path, None)
        if drop is not None:
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve(
    root: Path,
    *,
    ranges: bool = True,
    drop_after: dict[str, int] | None = None,
    redirects: dict[str, str] | None = None,
    busy: dict[str, tuple[int, int]] | None = None,
):
    """Serve ``root`` on an ephemeral 127.0.0.1 port with the faults of :class:`RangeHandler`;
    yields the server (``.url`` is its base URL)."""
    with serve_folder(
        root, RangeHandler, ranges=ranges, drop_after=dict(drop_after or {}),
        redirects=dict(redirects or {}), busy=dict(busy or {}),
    ) as server:  # fmt: skip
        yield server


@pytest.fixture
def http_serve():
    """:func:`serve`: ``with http_serve(folder, drop_after={...}) as srv:`` (``srv.url``)."""
    return serve


# --------------------------------------------------------------------------- loopback S3


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-API server (moto's) on 127.0.0.1, with the usual environment variables set
    (``AWS_ENDPOINT_URL`` and test credentials) for this process and the ones it starts.

    Yields ``make_bucket(name) -> "s3://name"``.
    """
    import os

    moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("s3fs", reason="s3fs is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)

    def make_bucket(name: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"]).create_bucket(Bucket=name)
        return f"s3://{name}"

    try:
        yield make_bucket
    finally:
        server.stop()
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- torch, stores


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: one intra-op thread is faster, and steady when other jobs share the CPU.

    Module-scoped, so module-scoped fixtures that train can depend on it; modules use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_SIZE = 64  # tile edge of the tiny stores


def write_tiny_store(
    path,
    *,
    n_train: int = 6,
    n_test: int = 1,
    modalities=("rgb", "dem", "seg"),
    unlabelled: bool = False,
    seed: int = 0,
) -> Path | str:
    """A store of ``TINY_SIZE`` px tiles ``356_5645``, ``357_5645``, ... that a network can learn:
    labels in 8 px blocks (class 0 too when ``unlabelled``), RGB the class colour plus noise,
    the DEM a ramp over 100-130 m, SAR the class id / K with an invalid strip 6 px wide."""
    from geosynth.catalog import load_catalog
    from geosynth.store import TileData, TilePlan, create_store, modality

    classes = load_catalog().classes
    size, k = TINY_SIZE, len(classes.classes)  # ids below k: the last class never occurs
    plans = [
        TilePlan(f"{356 + i}_5645", "demo", "train" if i < n_train else "test")
        for i in range(n_train + n_test)
    ]
    store = create_store(
        path, plans, tile_shape=(size, size), modalities=[modality(m) for m in modalities],
        dataset="test", crs="EPSG:25832", classes=classes,
    )  # fmt: skip
    colors = np.array(classes.palette())  # (K, 3)
    rng = np.random.default_rng(seed)
    for plan in plans:
        blocks = rng.integers(0 if unlabelled else 1, k, (size // 8, size // 8))
        seg = np.kron(blocks, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)  # (H, W)
        rgb = np.clip(colors[seg].transpose(2, 0, 1) + rng.normal(0, 8, (3, size, size)), 0, 255)
        ramp = np.linspace(100, 130, size, dtype=np.float32)[None, None, :] + rng.random()
        valid = np.ones((size, size), dtype=bool)
        valid[:, :6] = False
        data = {
            "rgb": rgb.astype(np.uint8),
            "dem": np.broadcast_to(ramp, (1, size, size)).astype(np.float32),
            "seg": seg,
            "sar": (seg[None] / k).astype(np.float32) * valid,
            "sar_valid": valid,
        }
        keep = {
            n: v
            for n, v in data.items()
            if n in modalities or n == "sar_valid" and "sar" in modalities
        }
        store.write_tile(plan.tile_id, TileData(**keep))
    return path if "://" in str(path) else Path(path)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    """Six train tiles and one test tile of rgb, dem and seg (:func:`write_tiny_store`); read only."""
    return write_tiny_store(tmp_path_factory.mktemp("tiny") / "tiny.zarr")


@pytest.fixture(scope="session")
def tiny_store_factory():
    """:func:`write_tiny_store`, for tests that need another tiny store."""
    return write_tiny_store


def stored_arrays(path) -> dict[str, np.ndarray]:
    """Everything a store holds, for bit-exact comparisons: the tile index arrays and, per
    modality, the stacked pixels of the tiles that have it (None elsewhere)."""
    from geosynth.store import open_store

    store = open_store(path)
    out = {name: store.group[name][:] for name in ("class_hist", "present", "state", "transform")}
    for name in (*store.modalities, *(["sar_valid"] if "sar" in store.modalities else [])):
        have = store.present(name if name != "sar_valid" else "sar")
        out[name] = [store.read(name, i) if have[i] else None for i in range(len(store))]
    return out


@pytest.fixture(scope="session")
def assert_same_store():
    """``assert_same_store(a, b)``: two stores hold the same tiles, bit for bit."""

    def check(a, b) -> None:
        got, ref = stored_arrays(a), stored_arrays(b)
        assert got.keys() == ref.keys()
        for name in ref:
            if isinstance(ref[name], list):
                assert [v is None for v in got[name]] == [v is None for v in ref[name]], name
                for g, r in zip(got[name], ref[name], strict=True):
                    if r is not None:
                        np.testing.assert_array_equal(g, r, err_msg=name)
            else:
                np.testing.assert_array_equal(got[name], ref[name], err_msg=name)

    return check


@pytest.fixture(scope="session")
def one_tile_world(tmp_path_factory) -> Path:
    """A one-tile demo world (tile 356_5645, 1 m DOP, 1 lidar point/m2), generated once per
    session; read only."""
    from geosynth.demo import ensure_world

    folder = tmp_path_factory.getbasetemp() / "demo-1x1-dop1-lidar1"
    ensure_world(folder, tiles=(1, 1), dop_resolution=1.0, lidar_density=1.0)
    return folder


@pytest.fixture
def geonrw_classes():
    """The catalog's class table (GeoNRW's 10 classes and the unlabelled 0)."""
    from geosynth.catalog import load_catalog

    return load_catalog().classes


# --------------------------------------------------------------------------- NRW on loopback


NRW = "https://www.opengeodata.nrw.de"


def loopback_catalog_data(base_url: str) -> dict:
    """The catalog with NRW's server moved onto ``base_url``, its paths kept (so a folder laid
    out as the server, such as a demo world, serves it), and the OSM extract at
    ``/osm/nordrhein-westfalen-latest.osm.pbf``."""
    import yaml

    from geosynth.catalog import default_catalog_path

    data = yaml.safe_load(default_catalog_path().read_text(encoding="utf-8"))

    def move(node):
        if isinstance(node, dict):
            return {k: move(v) for k, v in node.items()}
        if isinstance(node, list):
            return [move(v) for v in node]
        if isinstance(node, str) and node.startswith(NRW):
            return base_url + node[len(NRW) :]
        return node

    data["sources"] = move(data["sources"])
    data["sources"]["osm"]["extract"] = f"{base_url}/osm/nordrhein-westfalen-latest.osm.pbf"
    return data


@pytest.fixture
def loopback_catalog(tmp_path):
    """``loopback_catalog(base_url, edit=None) -> (path, Catalog)``: the catalog on a loopback
    server (:func:`loopback_catalog_data`), ``edit(data)`` applied, written to ``tmp_path``."""
    import yaml

    from geosynth.catalog import load_catalog

    def make(base_url: str, edit=None):
        data = loopback_catalog_data(base_url)
        if edit is not None:
            edit(data)
        path = tmp_path / "catalog.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
        return path, load_catalog(path)

    return make
