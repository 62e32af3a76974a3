"""A mirror of a provider's server: the catalog moved onto another base URL, or a folder
laid out as the server served on 127.0.0.1 for the length of a download.

``geosynth download --mirror URL`` reads NRW's folders from a mirror (an institution's
copy, a proxy) by the same paths; ``--mirror FOLDER`` serves a folder that holds the
server's paths (``produkte/geobasis/...``, as the demo world writes them), so the download
runs exactly the code it runs against the real server: listings, range requests, retries,
the host checks. The local server answers a folder URL with the folder's ``index.xml`` (as
NRW's server does), else its ``index.html``, and answers ``Range`` requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from geosynth.catalog import Catalog
from geosynth.errors import UsageError

FOLDER_ANSWERS = ("index.xml", "index.html")  # what a folder URL answers with, in order
TYPES = {".xml": "application/xml", ".json": "application/json", ".html": "text/html"}


def provider_base(catalog: Catalog) -> str:
    """The scheme and host of the provider's server: that of the orthophotos' listing."""
    listing = catalog.sources["dop"].layout("tiles").listing
    parts = urlsplit(listing)
    return f"{parts.scheme}://{parts.netloc}"


def on_mirror(catalog: Catalog, base_url: str) -> Catalog:
    """``catalog`` with every URL on the provider's server (:func:`provider_base`) moved onto
    ``base_url``, paths kept; other hosts (OSM extracts, published datasets) unchanged."""
    old = provider_base(catalog)
    new = base_url.rstrip("/")

    def move(url):
        return new + url[len(old) :] if isinstance(url, str) and url.startswith(old) else url

    def moved(obj):
        changes = {
            f.name: move(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.name in ("url", "listing", "metadata", "history", "extract")
        }
        return dataclasses.replace(obj, **changes)

    sources = {
        name: dataclasses.replace(
            moved(spec), layouts={k: moved(v) for k, v in spec.layouts.items()}
        )
        for name, spec in catalog.sources.items()
    }
    hosts = (*catalog.redirect_hosts, urlsplit(new).netloc)
    return dataclasses.replace(catalog, sources=sources, redirect_hosts=hosts)


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves the files under ``server.root`` with ``Range`` support; a folder URL answers
    with the folder's ``index.xml`` or ``index.html``. ``server.requests`` logs
    ``(path, Range header)``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # no access log on stderr
        pass

    def resolve(self) -> Path | None:
        """The file a request path names (a folder's answer for a folder), or None."""
        root = self.server.root.resolve()
        path = (root / unquote(self.path.split("?", 1)[0]).lstrip("/")).resolve()
        if root != path and root not in path.parents:
            return None
        if path.is_dir():
            path = next((path / n for n in FOLDER_ANSWERS if (path / n).is_file()), path)
        return path if path.is_file() else None

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = self.resolve()
        if path is None:
            self.send_error(404)
            return
        body = self.send_file(path.read_bytes(), TYPES.get(path.suffix, "application/octet-stream"))
        self.wfile.write(body)

    def send_file(self, data: bytes, content_type: str, ranges: bool = True) -> bytes:
        """Answer with ``data`` (or the part a ``Range: bytes=a-[b]`` header asks for);
        returns the body sent."""
        start, end, status = 0, len(data) - 1, 200
        header = self.headers.get("Range")
        if header and header.startswith("bytes=") and ranges:
            first, _, last = header[6:].partition("-")
            start = int(first) if first else max(0, len(data) - int(last))
            end = min(int(last), len(data) - 1) if first and last else len(data) - 1
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return b""
            status = 206
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes" if ranges else "none")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        return body


@contextlib.contextmanager
def serve_folder(root: str | Path, handler=MirrorHandler, **attributes) -> Iterator:
    """Serve ``root`` on an ephemeral 127.0.0.1 port for the ``with`` block; yields the server
    (``.url`` is its base URL). ``attributes`` are set on the server for the handler."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"--mirror {root}: not a folder")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.root = root
    server.requests = []
    for key, value in attributes.items():
        setattr(server, key, value)
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def mirrored(catalog: Catalog, mirror: str | Path | None) -> Iterator[Catalog]:
    """The catalog on ``mirror`` (a base URL, or a folder served on loopback for the block),
    or unchanged without one."""
    if mirror is None:
        yield catalog
    elif "://" in str(mirror):
        yield on_mirror(catalog, str(mirror))
    else:
        with serve_folder(mirror) as server:
            yield on_mirror(catalog, server.url)
