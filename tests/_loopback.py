"""A file server and a forwarding proxy on 127.0.0.1 for download tests (no other network is used).

The server serves ``files`` (path -> bytes) with HTTP/1.1 Range support and ETags, counts and records
every request, and can misbehave on purpose: ``cut`` (path -> bytes after which the next answer for that
path is cut off, once), ``stall`` (path -> seconds to stall after the headers and half the body, once),
``status`` (path -> an error status), ``ignore_range``. The proxy forwards absolute-URL requests
(``GET http://127.0.0.1:port/x``) and counts them.
"""

from __future__ import annotations

import hashlib
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator


@dataclass
class Behaviour:
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    stall: dict[str, float] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)


def _handler(b: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path
            b.requests.append((path, dict(self.headers)))
            if path in b.status:
                self.send_error(b.status[path])
                return
            data = b.files.get(path)
            if data is None:
                self.send_error(404, "Not Found")
                return
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            start = 0
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if rng and not b.ignore_range and (if_range is None or if_range == etag):
                start = int(rng.split("=", 1)[1].split("-", 1)[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.end_headers()
            if path in b.cut:
                n = b.cut.pop(path)
                self.wfile.write(body[:n])
                self.wfile.flush()
                self.close_connection = True
                return
            if path in b.stall:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                time.sleep(b.stall.pop(path))
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@contextmanager
def serve(b: Behaviour) -> Iterator[str]:
    """Run the file server; yields its base URL (``http://127.0.0.1:<port>``)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(b))
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@contextmanager
def proxy() -> Iterator[tuple[str, list[str]]]:
    """A forwarding HTTP proxy on loopback; yields (its URL, the list of URLs it forwarded)."""
    seen: list[str] = []
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("range", "if-range", "user-agent")}
            try:
                resp = direct.open(urllib.request.Request(self.path, headers=headers), timeout=5)
            except urllib.error.HTTPError as exc:
                resp = exc
            body = resp.read()
            self.send_response(resp.status if hasattr(resp, "status") else resp.code)
            for k in ("Content-Range", "ETag"):
                if resp.headers.get(k):
                    self.send_header(k, resp.headers[k])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    finally:
        srv.shutdown()
        srv.server_close()


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connection refused: what an offline machine sees)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"
