"""A loopback HTTP server that serves a folder and honours single Range requests.

Python's SimpleHTTPRequestHandler ignores Range, so resume could not be tested with it.
It records each request's Range header so tests can check what was asked for.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    log: list

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        path = (self.root / self.path.lstrip("/")).resolve()
        self.log.append((self.path, self.headers.get("Range")))
        if not path.is_file() or self.root.resolve() not in path.parents:
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(folder: Path):
    handler = type("Handler", (_Handler,), {"root": Path(folder), "log": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.log
    finally:
        server.shutdown()
        server.server_close()
