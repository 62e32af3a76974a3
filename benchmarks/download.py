"""Downloading N small files from a loopback HTTP server with ``--jobs 1`` against ``--jobs 4``.

The server (threaded, on 127.0.0.1) serves N files of SIZE bytes. Loopback has neither the
latency nor the per-connection bandwidth of a real provider, so it can add both: each
response waits ``--latency-ms`` before its first byte and sends at most ``--rate`` MB/s per
connection (NRW's server throttles single connections; a transatlantic round trip is about
100 ms). Two rows are printed per setting: the plain loopback and the shaped link. Each row
downloads into a fresh folder through :func:`geosynth.ingest.download.download_many` (the code
``geosynth download`` runs: verify, resume, manifest) and reports seconds, MB/s and the
ratio jobs 1 / jobs N.

Run: python benchmarks/download.py [--files 32] [--size 2000000] [--jobs 4]
"""

from __future__ import annotations

import argparse
import http.server
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from geosynth.ingest.download import Download, download_many


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        time.sleep(self.server.latency)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        rate = self.server.rate
        block = 64 * 1024
        for start in range(0, len(data), block):
            t0 = time.perf_counter()
            self.wfile.write(data[start : start + block])
            if rate:
                wait = block / rate - (time.perf_counter() - t0)
                if wait > 0:
                    time.sleep(wait)


def serve(root: Path, latency: float, rate: float):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.root, server.latency, server.rate = root, latency, rate
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run(server, names: list[str], jobs: int, work: Path) -> float:
    dest = work / f"dest-{jobs}-{time.monotonic_ns()}"
    host = f"127.0.0.1:{server.server_address[1]}"
    items = [Download("dop", f"http://{host}/{n}", f"dop/{n}") for n in names]
    t0 = time.perf_counter()
    download_many(items, dest, allowed_hosts=[host], jobs=jobs, retries=0)
    seconds = time.perf_counter() - t0
    shutil.rmtree(dest)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--size", type=int, default=2_000_000, help="bytes per file")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--rate", type=float, default=8.0, help="MB/s per connection")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="geosynth-bench-download-"))
    try:
        www = work / "www"
        www.mkdir()
        names = []
        for i in range(args.files):
            name = f"dop10rgbi_32_{300 + i}_5650_1_nw_2024.jp2"
            (www / name).write_bytes(os.urandom(args.size))
            names.append(name)
        total_mb = args.files * args.size / 1e6
        print(f"{args.files} files x {args.size / 1e6:.1f} MB = {total_mb:.0f} MB, "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        print(f"{'link':<34}{'jobs 1 s':>10}{f'jobs {args.jobs} s':>10}{'MB/s 1':>9}"
              f"{f'MB/s {args.jobs}':>9}{'ratio':>8}")  # fmt: skip
        links = [("loopback, unshaped", 0.0, 0.0),
                 (f"{args.latency_ms:.0f} ms, {args.rate:g} MB/s per connection",
                  args.latency_ms / 1000, args.rate * 1e6)]  # fmt: skip
        for label, latency, rate in links:
            server = serve(www, latency, rate)
            try:
                one = run(server, names, 1, work)
                many = run(server, names, args.jobs, work)
            finally:
                server.shutdown()
            print(f"{label:<34}{one:>10.2f}{many:>10.2f}{total_mb / one:>9.1f}"
                  f"{total_mb / many:>9.1f}{one / many:>7.2f}x")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
