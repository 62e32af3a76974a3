"""Trust under faults, each done for real: damaged chunks, verify and its repair, killed
parents with live workers, racing builds, disk full, read-only outputs, redirects, leftovers.

Every case asserts the exit code, the one-line message and what is on disk afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geosynth.catalog import load_catalog
from geosynth.cli import cli
from geosynth.errors import StoreError
from geosynth.store import (
    COMPLETE,
    PLANNED,
    StoreLayout,
    TileData,
    TilePlan,
    create_store,
    modality,
    open_store,
    verify,
)

SIZE, CHUNK = 64, 32  # 2 x 2 chunks per tile array
TILES = ["356_5645", "357_5645", "358_5645"]


def make_store(path, *, checksum: bool = True, codec: str = "blosc-lz4", seed: int = 0):
    """Three complete tiles of rgb (noise: Blosc stores it as a raw copy), dem and seg."""
    plans = [TilePlan(t, "demo", "train") for t in TILES]
    store = create_store(
        path, plans, tile_shape=(SIZE, SIZE), dataset="test", crs="EPSG:25832",
        modalities=[modality("rgb"), modality("dem"), modality("seg")],
        classes=load_catalog().classes,
        layout=StoreLayout(chunk=CHUNK, codec=codec, checksum=checksum),
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    for t in TILES:
        store.write_tile(
            t,
            TileData(
                rgb=rng.integers(0, 256, (3, SIZE, SIZE), dtype=np.uint8),
                dem=rng.normal(100, 5, (1, SIZE, SIZE)).astype("float32"),
                seg=rng.integers(1, 11, (SIZE, SIZE), dtype=np.uint8),
            ),
        )
    return Path(path)


def chunk_file(store: Path, tile: str, name: str, bi: int = 1, bj: int = 0) -> Path:
    band = ["0"] if name != "seg" else []
    return store.joinpath("tiles", tile, name, "c", *band, str(bi), str(bj))


def truncate(path: Path, keep: float = 0.6) -> None:
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


def extend(path: Path) -> None:
    """Append more bytes than any chunk of the array holds (the reader reads a file in one
    call of a chunk's size plus headers: what lies beyond must still be seen)."""
    with open(path, "ab") as f:
        f.write(bytes(4 * SIZE * SIZE))


def flip_byte(path: Path, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    offset = int(np.random.default_rng(seed).integers(20, len(data) - 8))  # past the header
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert "Traceback" not in text, text
    return lines[-1]


# --------------------------------------------------------------------------- damaged chunks


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    return {
        "crc": make_store(root / "crc.zarr"),
        "plain": make_store(root / "plain.zarr", checksum=False),
        "zstd": make_store(root / "zstd.zarr", codec="zstd"),
        "none": make_store(root / "none.zarr", codec="none", checksum=False),
    }


def test_new_stores_checksum_every_chunk(stores):
    store = stores["crc"]
    for meta in store.rglob("zarr.json"):
        doc = json.loads(meta.read_text())
        if doc.get("node_type") == "array":
            names = [c["name"] for c in doc["codecs"]]
            assert names[-1] == "crc32c", (meta, names)
    assert open_store(store).layout.checksum
    old = open_store(stores["plain"])  # written without checksums: still read, and kept so
    assert not old.layout.checksum
    assert old.read("rgb", 0).shape == (3, SIZE, SIZE)


@pytest.mark.parametrize("kind", ["crc", "plain", "zstd", "none"])
@pytest.mark.parametrize("damage", ["truncate", "flip", "extend"])
def test_every_read_of_a_damaged_chunk_fails_naming_it(stores, tmp_path, kind, damage):
    if damage == "flip" and kind in ("plain", "none"):
        pytest.skip("without a checksum a flipped byte of a raw copy is undetectable")
    store = tmp_path / "s.zarr"
    shutil.copytree(stores[kind], store)
    target = chunk_file(store, TILES[1], "rgb")
    {"truncate": truncate, "flip": flip_byte, "extend": extend}[damage](target)
    s = open_store(store)
    clean = s.read("rgb", 1, (slice(0, CHUNK), slice(None)))  # other chunks still read
    assert clean.shape == (3, CHUNK, SIZE)
    with pytest.raises(StoreError) as err:
        s.read("rgb", 1)
    message = str(err.value)
    assert str(store) in message and "array rgb" in message and f"tile {TILES[1]}" in message
    assert f"tiles/{TILES[1]}/rgb/c/0/1/0" in message
    if kind in ("plain", "none"):
        return  # zarr itself checks no frame lengths: remote stores rely on the checksum
    # the same through zarr (as for a remote store)
    reader = s.reader("rgb")
    reader._direct = False
    with pytest.raises(StoreError, match=f"array rgb, tile {TILES[1]}"):
        s.read("rgb", 1)


def test_verify_lists_damaged_chunks_and_repair_marks_their_tiles(stores, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(stores["crc"], store)
    truncate(chunk_file(store, TILES[0], "rgb", 0, 1))
    flip_byte(chunk_file(store, TILES[0], "dem", 1, 1))
    truncate(chunk_file(store, TILES[2], "seg", 1, 0), keep=0.3)
    problems = verify(open_store(store))
    chunks = sorted(p.chunk for p in problems)
    assert chunks == [
        f"tiles/{TILES[0]}/dem/c/0/1/1",
        f"tiles/{TILES[0]}/rgb/c/0/0/1",
        f"tiles/{TILES[2]}/seg/c/1/0",
    ]
    assert verify(open_store(store), quick=True) == []  # metadata only

    result = run_cli("verify", store)
    assert result.exit_code == 1
    assert one_line(result.output) == f"Error: 3 problem(s) in {store}"
    assert f"{TILES[2]}: damaged chunk tiles/{TILES[2]}/seg/c/1/0" in result.output
    assert run_cli("verify", "--quick", store).exit_code == 0

    result = run_cli("verify", "--repair", store)
    assert result.exit_code == 1 and "2 tile(s) marked for rewriting" in result.output
    states = open_store(store).states()
    assert list(states) == [PLANNED, COMPLETE, PLANNED]
    # what a build or import does next: rewrite the planned tiles
    s = open_store(store, mode="r+")
    ref = open_store(stores["crc"])
    for i in (0, 2):
        s.write_tile(TILES[i], TileData(**{n: ref.read(n, i) for n in ("rgb", "dem", "seg")}))
    result = run_cli("verify", store)
    assert result.exit_code == 0, result.output


def test_verify_without_the_state_array_is_one_line(stores, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(stores["crc"], store)
    (store / "state" / "zarr.json").unlink()
    result = run_cli("verify", store)
    assert result.exit_code == 1
    assert one_line(result.output) == f"Error: 1 problem(s) in {store}"
    assert "the tile index array 'state' is missing (state/zarr.json)" in result.output
    with pytest.raises(StoreError, match="'state' is missing"):
        open_store(store).states()


def test_verify_of_a_damaged_zarr_json_names_the_tile(stores, tmp_path):
    store = tmp_path / "s.zarr"
    shutil.copytree(stores["crc"], store)
    (store / "tiles" / TILES[1] / "zarr.json").write_text("{not json")
    result = run_cli("verify", store)
    assert result.exit_code == 1, result.output
    assert f"{TILES[1]}: rgb: unreadable metadata" in result.output
    assert one_line(result.output) == f"Error: 3 problem(s) in {store}"  # rgb, dem, seg
    result = run_cli("verify", "--repair", store)
    assert f"1 tile(s) marked for rewriting ({TILES[1]})" in one_line(result.output)


# --------------------------------------------------------------------------- orphans


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
        if int(session) == sid and state != "Z":
            out.append(int(entry))
    return out


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def kill_parent_then_expect_no_orphans(proc, children: int, delay: float) -> None:
    """Wait until ``proc`` has ``children`` processes besides itself, SIGKILL only ``proc``
    after ``delay`` s; every process it started must then exit on its own."""
    sid = proc.pid  # start_new_session: the parent leads its own session
    try:
        wait_for(lambda: len(session_pids(sid)) >= children + 1, 120, f"{children} workers")
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        wait_for(lambda: not session_pids(sid), 30, "the orphaned workers to exit")
    finally:
        for pid in session_pids(sid):  # never leave them behind, even when the test fails
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from geosynth.demo import generate_world

    root = tmp_path_factory.mktemp("world")
    generate_world(root, tiles=(2, 1), seed=3, dop_resolution=1.0, lidar_density=1.0)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_killed_build_leaves_no_workers(world, tmp_path, seed):
    delay = float(np.random.default_rng(seed).uniform(0.5, 4.0))
    cmd = [sys.executable, "-m", "geosynth", "-q", "build-geonrw", "--region", "demo",
           "--source-dir", str(world), "--out", str(tmp_path / "k.zarr"), "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    kill_parent_then_expect_no_orphans(proc, children=3, delay=delay)  # 2 workers + tracker


LOADER_SCRIPT = """
import sys, time
from torch.utils.data import DataLoader
from geosynth.ml.data.datasets import SynthesisDataset
loader = DataLoader(SynthesisDataset(sys.argv[1], "train", crop=32, seed=0), batch_size=2,
                    num_workers=2, persistent_workers=True)
for batch in loader:
    break
print("loaded", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_killed_training_process_leaves_no_loader_workers(stores, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", LOADER_SCRIPT, str(stores["crc"])],
        start_new_session=True, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "loaded"
    kill_parent_then_expect_no_orphans(proc, children=2, delay=0.0)


DASK_SCRIPT = """
import time
from dask.distributed import LocalCluster
from geosynth.ingest.run import TileTask, run_tasks
from geosynth.store import TilePlan

def sleepy(task):
    print("running", flush=True)
    time.sleep(600)

if __name__ == "__main__":
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        tasks = [TileTask(store="x", plan=TilePlan("356_5645", "demo", "train"))]
        for _ in run_tasks(sleepy, tasks, scheduler=cluster.scheduler_address):
            pass
"""


@pytest.mark.slow
def test_killed_dask_client_leaves_no_cluster_workers(tmp_path):
    script = tmp_path / "cluster.py"
    script.write_text(DASK_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script)], start_new_session=True, stdout=subprocess.PIPE, text=True,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "running"
    kill_parent_then_expect_no_orphans(proc, children=1, delay=0.0)


# --------------------------------------------------------------------------- outputs


def geosynth_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "geosynth", "-q", *(str(a) for a in args)]


def build_cmd(world, out, *extra):
    return geosynth_cmd("build-geonrw", "--region", "demo", "--source-dir", world, "--out", out,
                        "--modalities", "rgb,dem,seg", *extra)  # fmt: skip


def file_size_limit(limit: int):
    """A ``preexec_fn``: files of this process may not grow beyond ``limit`` bytes (EFBIG,
    as on a full disk; SIGXFSZ ignored so that the write fails instead of killing it)."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.slow
def test_disk_full_build_stops_with_one_line_and_writes_its_report(world, tmp_path):
    out = tmp_path / "full.zarr"
    result = subprocess.run(build_cmd(world, out), preexec_fn=file_size_limit(30_000),
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith(f"Error: {out}: file too large") and "(disk full)" in line
    assert "rerun to resume" in line and "Task was destroyed" not in result.stderr
    report = json.loads((tmp_path / "full.zarr.report.json").read_text())
    assert report["interrupted"] and report["done"] == []
    assert "disk full" in next(iter(report["failed"].values()))
    assert len(report["records"]) == 1  # stopped at the first: the other tile never started
    states = open_store(out).states()
    assert COMPLETE not in states and 1 not in states  # none left 'being written'
    assert not list(tmp_path.glob(".*"))  # no temporaries
    rerun = subprocess.run(build_cmd(world, out), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert verify(open_store(out)) == []


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder this process cannot write: its mode (or, for root, a read-only bind mount)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mount = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                           capture_output=True)  # fmt: skip
    if mount.returncode != 0:
        pytest.skip("root without mount rights: cannot make a read-only folder")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_output_is_refused_before_any_work(stores, read_only_dir):
    out = read_only_dir / "s.zarr"
    result = run_cli("upgrade-store", stores["crc"], out)
    assert result.exit_code == 1
    assert one_line(result.output) == (
        f"Error: cannot write the store {out}: {read_only_dir}/s.zarr.lock: read-only file system"
        if os.geteuid() == 0
        else f"Error: cannot write the store {out}: {read_only_dir}/s.zarr.lock: permission denied"
    )
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["keep.txt"]


def test_a_second_writer_is_refused_naming_the_holder(stores, tmp_path):
    from geosynth.errors import OutputError
    from geosynth.store.lock import store_lock

    out = tmp_path / "s.zarr"
    with store_lock(out):
        with (
            pytest.raises(OutputError, match=rf"being written by process {os.getpid()} on"),
            store_lock(out),
        ):
            pass
        result = subprocess.run(
            geosynth_cmd("upgrade-store", stores["crc"], out), capture_output=True, text=True
        )
        assert result.returncode == 1
        assert f"store {out} is being written by process {os.getpid()}" in error_line(result.stderr)
    assert not (tmp_path / "s.zarr.lock").exists()  # released and removed
    assert not out.exists()


@pytest.mark.slow
def test_racing_builds_on_one_new_store(world, tmp_path, assert_same_store):
    out = tmp_path / "race.zarr"
    procs = [
        subprocess.Popen(build_cmd(world, out), stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code == 1)
    assert f"store {out} is being written by process" in error_line(loser)
    rerun = subprocess.run(build_cmd(world, out), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and verify(open_store(out)) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.zarr", "race.zarr.report.json"]


CREATE_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import geosynth.store.create as create
from test_faults import make_store
if sys.argv[3] == "kill":  # die while the root is being written, as kill -9 would
    create.consolidate = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
make_store(sys.argv[1])
"""


def test_kill_during_creation_leaves_nothing_after_the_rerun(tmp_path):
    out = tmp_path / "s.zarr"
    tests = Path(__file__).parent
    run = [sys.executable, "-c", CREATE_SCRIPT, str(out), str(tests)]
    killed = subprocess.run([*run, "kill"], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == [".s.zarr.creating"]
    rerun = subprocess.run([*run, "run"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["s.zarr"]
    assert verify(open_store(out)) == []


# --------------------------------------------------------------------------- inputs


def test_inputs_with_a_transform_but_no_crs_need_crs(tmp_path):
    import rasterio
    from affine import Affine

    seg = tmp_path / "seg.tif"
    profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "uint8",
               "transform": Affine(1, 0, 356_000, 0, -1, 5_646_000)}  # fmt: skip
    with rasterio.open(seg, "w", **profile) as dst:
        dst.write(np.kron([[10, 3], [3, 3]], np.ones((16, 16), dtype=np.uint8))[None])
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", **{**profile, "dtype": "float32"}) as dst:
        dst.write(np.full((1, 32, 32), 100, dtype=np.float32))
    out = tmp_path / "edit"
    args = ["edit-classes", "--seg", seg, "--dem", dem, "--from", "buildings",
            "--to", "agricultural", "--out", out]  # fmt: skip
    result = run_cli(*args)
    assert result.exit_code == 1
    assert one_line(result.output) == (
        f"Error: {seg}: has a transform but no CRS; give --crs (e.g. EPSG:25832), or the "
        "outputs would not be georeferenced"
    )
    assert not out.exists()  # no empty output folder
    result = run_cli(*args, "--crs", "EPSG:25832")
    assert result.exit_code == 0, result.output
    with rasterio.open(next(out.glob("*.tif"))) as src:
        assert src.crs.to_epsg() == 25832 and src.transform.c == 356_000


def test_zip_with_an_empty_member_name_is_refused(tmp_path):
    import zipfile

    from geosynth.errors import DataError
    from geosynth.ingest.download import safe_extract

    archive = tmp_path / "e.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", b"x")
        zf.writestr(zipfile.ZipInfo(""), b"data")
    with pytest.raises(DataError, match="a member has an empty name"):
        safe_extract(archive, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- downloads


def test_every_redirect_hop_is_checked_and_the_manifest_has_the_final_url(tmp_path, http_serve):
    from urllib.parse import urlsplit

    from geosynth.ingest.download import Download, RefusedHost, download_many

    served = tmp_path / "served"
    served.mkdir()
    (served / "data.bin").write_bytes(b"catalog data" * 100)
    (served / "evil.bin").write_bytes(b"not from the catalog")
    with http_serve(served) as other:
        hops = {"/a": "/b", "/b": "/data.bin", "/x": "/y", "/y": f"{other.url}/evil.bin"}
        with http_serve(served, redirects=hops) as catalog:
            host = urlsplit(catalog.url).netloc
            dest = tmp_path / "dest"
            records = download_many([Download("dop", f"{catalog.url}/a", "a.bin")], dest,
                                    allowed_hosts={host}, retries=0)  # fmt: skip
            assert records[0]["final_url"] == f"{catalog.url}/data.bin"
            manifest = json.loads((dest / "manifest.json").read_text())
            assert json.dumps(manifest).count(f"{catalog.url}/data.bin") == 1
            assert (dest / "a.bin").read_bytes() == (served / "data.bin").read_bytes()

            with pytest.raises(RefusedHost) as err:  # the second hop leaves the catalog
                download_many([Download("dop", f"{catalog.url}/x", "x.bin")], dest,
                              allowed_hosts={host}, retries=3)  # fmt: skip
            assert str(err.value) == (
                f"refusing the redirect of {catalog.url}/y to {other.url}/evil.bin: "
                f"{urlsplit(other.url).netloc!r} is not a host of the data catalog"
            )
            assert sorted(p.name for p in dest.iterdir()) == ["a.bin", "manifest.json"]
            assert not other.requests  # never contacted
            assert [r[0] for r in catalog.requests].count("/x") == 1  # refused: not retried

            both = {host, urlsplit(other.url).netloc}  # the catalog's redirect_hosts
            records = download_many([Download("dop", f"{catalog.url}/x", "x.bin")], dest,
                                    allowed_hosts=both, retries=0)  # fmt: skip
            assert records[0]["final_url"] == f"{other.url}/evil.bin"


# --------------------------------------------------------------------------- outputs of ml commands


@pytest.fixture(scope="module")
def nets(tmp_path_factory, one_torch_thread, tiny_store_factory):
    """A tiny store (3 test tiles), a generator (seg, dem -> rgb) and a U-Net, one step each."""
    from geosynth.ml.training.config import GanConfig, UNetRunConfig
    from geosynth.ml.training.train import train_gan
    from geosynth.ml.training.train_unet import train_unet

    root = tmp_path_factory.mktemp("nets")
    store = tiny_store_factory(root / "s.zarr", n_train=2, n_test=3)
    tiny = dict(crop=32, batch_size=2, workers=0, tensorboard=False, deterministic=True,
                max_steps=1, samples=0, image_every=0, log_every=0)  # fmt: skip
    train_gan(GanConfig(store=str(store), out=str(root / "g"), cap=4, **tiny))
    train_unet(UNetRunConfig(store=str(store), out=str(root / "u"), input="rgb", base_channels=4,
                             val_split=None, **tiny))  # fmt: skip
    return {"store": store, "g": root / "g", "u": root / "u"}


def test_read_only_outputs_of_train_evaluate_and_aerial_are_refused_at_once(
    stores, read_only_dir, world
):
    cause = "read-only file system" if os.geteuid() == 0 else "permission denied"
    run = read_only_dir / "run"
    result = run_cli("train", "--store", stores["crc"], "--out", run, "--max-steps", "1")
    assert result.exit_code == 1
    assert (
        one_line(result.output)
        == f"Error: cannot write the run folder {run}: {read_only_dir}: {cause}"
    )
    out = read_only_dir / "eval"  # refused before the networks are even loaded
    result = run_cli("evaluate", "--generator", stores["crc"], "--unet", stores["crc"],
                     "--store", stores["crc"], "--out", out)  # fmt: skip
    assert result.exit_code == 1
    assert one_line(result.output) == (
        f"Error: cannot write the output folder {out}: {read_only_dir}: {cause}"
    )
    tif = read_only_dir / "sub" / "a.tif"
    dop = next(world.rglob("*.jp2"), None) or next(world.rglob("*.tif"))
    result = run_cli("aerial", dop, "--tile", "356_5645", "--out", tif)
    assert result.exit_code == 1
    assert one_line(result.output) == f"Error: cannot write {tif}: {read_only_dir}: {cause}"
    assert sorted(p.name for p in read_only_dir.iterdir()) == ["keep.txt"]


KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path

def die(*args, **kwargs):  # as kill -9 in the middle of {what}
    {leave}
    os.kill(os.getpid(), signal.SIGKILL)

{patch}
from geosynth.cli import cli
cli(sys.argv[1:])
"""
# synthesize: killed while GDAL writes the COG (its temporary and GDAL's overview file)
KILL_SYNTHESIZE = KILL_SCRIPT.format(
    what="the COG copy",
    leave='Path(args[1]).write_bytes(b"half"); Path(str(args[1]) + ".ovr.tmp").write_bytes(b"x")',
    patch="import rasterio.shutil\nrasterio.shutil.copy = die",
)
# evaluate: killed after the bar chart, the first of its four files
KILL_EVALUATE = KILL_SCRIPT.format(
    what="writing the results",
    leave='Path(args[1]).write_bytes(b"png")',
    patch="import geosynth.analysis.results as r\nr.plot_iou = die",
)


@pytest.mark.slow
def test_killed_synthesize_leaves_temporaries_the_next_run_removes(nets, tmp_path):
    out = tmp_path / "synth"
    args = ["-q", "synthesize", "--generator", nets["g"], "--store", nets["store"], "--tiles",
            "356_5645", "--out", out, "--device", "cpu"]  # fmt: skip
    killed = subprocess.run([sys.executable, "-c", KILL_SYNTHESIZE, *map(str, args)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    stale = sorted(p.name for p in out.iterdir())
    assert len(stale) == 2 and stale[0].startswith(".356_5645_rgb.tif.tmp-"), stale
    assert stale[1] == stale[0] + ".ovr.tmp"
    live = f".other_rgb.tif.tmp-{os.getpid()}-0123abcd"  # a running writer's: kept
    for name in (live, ".notes.txt.tmp-1-0123abcd", "keep.txt"):  # not synthesize's: kept
        (out / name).write_text("x")
    rerun = subprocess.run(geosynth_cmd(*args[1:]), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [live, ".notes.txt.tmp-1-0123abcd", "keep.txt", "356_5645_panel.png", "356_5645_rgb.tif"]
    )


@pytest.mark.slow
def test_killed_evaluate_leaves_no_partial_folder(nets, tmp_path):
    out = tmp_path / "eval"
    args = ["-q", "evaluate", "--generator", nets["g"], "--unet", nets["u"], "--store",
            nets["store"], "--out", out, "--device", "cpu"]  # fmt: skip
    killed = subprocess.run([sys.executable, "-c", KILL_EVALUATE, *map(str, args)],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()  # not a folder with only iou_per_class.png
    (temporary,) = tmp_path.iterdir()
    assert temporary.name.startswith(".eval.tmp-")
    assert [p.name for p in temporary.iterdir()] == ["iou_per_class.png"]
    rerun = subprocess.run(geosynth_cmd(*args[1:]), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["eval"]
    assert sorted(p.name for p in out.iterdir()) == [
        "iou_per_class.png", "metrics.csv", "metrics.json", "table_row.md"
    ]  # fmt: skip


def test_failing_commands_leave_no_empty_output_folder(nets, tmp_path):
    import rasterio
    from affine import Affine

    from geosynth.store import open_store as open_

    s = open_(nets["store"])
    seg = tmp_path / "seg.tif"
    with rasterio.open(seg, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       crs="EPSG:25832", transform=Affine(1, 0, 356_000, 0, -1, 5_646_000)) as dst:  # fmt: skip
        dst.write(s.read("seg", 0)[None])
    dem = tmp_path / "dem.tif"
    with rasterio.open(dem, "w", driver="GTiff", width=64, height=64, count=1, dtype="float32",
                       crs="EPSG:25832", transform=Affine(1, 0, 356_000, 0, -1, 5_646_000)) as dst:  # fmt: skip
        dst.write(s.read("dem", 0))
    out = tmp_path / "a" / "flood"
    result = run_cli("edit-flood", "--seg", seg, "--dem", dem, "--generator", nets["g"],
                     "--hmin", "nan", "--out", out)  # fmt: skip
    assert result.exit_code == 2
    assert one_line(result.output) == "Error: --hmin 'nan': levels must be finite numbers"
    # fails after making its folder: the generator needs the DEM too
    out = tmp_path / "b" / "synth"
    result = run_cli("synthesize", "--generator", nets["g"], "--seg", seg, "--out", out)
    assert result.exit_code == 2
    assert (
        one_line(result.output) == f"Error: generator {nets['g']} needs dem, which the tile lacks"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dem.tif", "seg.tif"]  # nor parents


def test_resumed_training_logs_each_step_once(tiny_store, tmp_path, one_torch_thread):
    from geosynth.ml.training.config import GanConfig
    from geosynth.ml.training.train import train_gan

    out = tmp_path / "run"
    config = dict(store=str(tiny_store), out=str(out), cap=4, crop=32, batch_size=2, workers=0,
                  tensorboard=False, deterministic=True, log_every=1, samples=0, image_every=0,
                  epoch_gap=0)  # fmt: skip

    def interrupt(info):  # after steps 4 and 5 were logged; the checkpoint is step 3's
        if info.kind == "step" and info.step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_gan(GanConfig(**config, epochs=3), progress=interrupt)
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 6, "epo')  # a line cut short by the kill
    logged = [
        json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()[:-1]
    ]
    assert 5 in logged
    train_gan(GanConfig(**config, epochs=3), resume=True)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if not r.get("end_of_epoch") and not r.get("validation")]
    assert steps == list(range(1, 10))  # 3 epochs of 3 steps, each once
    ends = [r["step"] for r in records if r.get("end_of_epoch")]
    assert ends == [3, 6, 9]


# --------------------------------------------------------------------------- minor inputs


def test_xml_that_is_not_osm_is_refused(tmp_path):
    gpx = tmp_path / "track.osm"
    gpx.write_text('<?xml version="1.0"?>\n<gpx version="1.1"><trk><name>x</name></trk></gpx>\n')
    out = tmp_path / "lc.tif"
    result = run_cli("landcover", "--osm", gpx, "--tile", "356_5645", "--out", out)
    assert result.exit_code == 1
    assert one_line(result.output) == (
        f"Error: {gpx}: not an OSM XML file: its root element is <gpx>, not <osm>"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["track.osm"]


def test_lidar_file_without_points_is_reported_as_such(tmp_path):
    import laspy

    las = tmp_path / "empty.las"
    header = laspy.LasHeader(point_format=1, version="1.2")
    header.offsets, header.scales = [356_000, 5_645_000, 0], [0.01, 0.01, 0.01]
    laspy.LasData(header).write(las)
    out = tmp_path / "dem.tif"
    result = run_cli("dem", las, "--tile", "356_5645", "--crs", "EPSG:25832", "--out", out)
    assert result.exit_code == 1
    assert one_line(result.output) == f"Error: {las} has no points"
    assert not out.exists()


def test_pipeline_set_values_are_one_argument_and_step_names_no_paths(tmp_path):
    from geosynth.pipeline.recipe import load_pipeline

    recipe = tmp_path / "p.yaml"
    recipe.write_text(
        "vars:\n  out: o\n  title: t\n  store: '{out}/s.zarr'\n  extra: --workers 2\n"
        "steps:\n  - name: info\n    run: geosynth report {store} --title {title} {extra}\n"
        "    outputs: ['{out}/r.md']\n"
    )
    spaced = str(tmp_path / "my runs")
    pipeline = load_pipeline(recipe, {"out": spaced, "title": "two words; 'quoted'"})
    assert pipeline.steps[0].args == (
        "report", f"{spaced}/s.zarr", "--title", "two words; 'quoted'", "--workers", "2"
    )  # fmt: skip
    assert pipeline.steps[0].outputs == (f"{spaced}/r.md",)
    result = run_cli("pipeline", "run", recipe, "--dry-run", "--set", "title=a b")
    assert result.exit_code == 0 and "--title 'a b'" in result.output, result.output

    for name in ("../evil", "a/b", "..", ".hidden"):
        recipe.write_text(
            f"steps:\n  - name: '{name}'\n    run: geosynth info x\n    outputs: [x]\n"
        )
        result = run_cli("pipeline", "run", recipe, "--dry-run")
        assert result.exit_code == 2, (name, result.output)
        assert f"step name {name!r} is not allowed" in result.output
