"""A real HTTP server on 127.0.0.1 for download tests: Range requests and dropped connections."""

from __future__ import annotations

import contextlib
import http.server
import threading
from pathlib import Path


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files under ``server.root`` with ``Range`` support.

    ``server.drop_after`` maps a URL path to a byte count: the first request for
    that path sends only that many bytes of the body and closes the connection
    (what a flaky link does mid-file). ``server.requests`` logs (path, range).
    """

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        path = self.server.root / self.path.lstrip("/")
        self.server.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        status = 200
        header = self.headers.get("Range")
        if header and header.startswith("bytes=") and self.server.ranges:
            start = int(header[6:].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        drop = self.server.drop_after.pop(self.path, None)
        if drop is not None:
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@contextlib.contextmanager
def serve(root: Path, *, ranges: bool = True, drop_after: dict[str, int] | None = None):
    """Serve ``root`` on an ephemeral 127.0.0.1 port; yields the server (``.url`` is its base URL)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    server.root = Path(root)
    server.ranges = ranges
    server.drop_after = dict(drop_after or {})
    server.requests = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
