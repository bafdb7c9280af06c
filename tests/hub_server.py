"""A loopback HTTP server (127.0.0.1) that plays the Hugging Face Hub and plain download hosts.

The real ``huggingface_hub`` client talks to it through ``HF_ENDPOINT``; plain URLs reach it
through ``JAXBONES_URL_MIRROR`` (``<server>/<host>/<path>``). Files are bytes the tests write
from randomly initialised reference models in the published formats. Faults are injected per
file: a truncated body (the announced length is the full one), or a stall after half the
body (for killing a downloading process).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
import urllib.parse
from typing import Self

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def pth_bytes(obj) -> bytes:
    """``obj`` as ``torch.save`` writes it to a ``.pth`` file."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def safetensors_bytes(state_dict) -> bytes:
    """A torch state dict as a ``.safetensors`` file's bytes."""
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state_dict.items()})


class HubServer:
    """``with HubServer() as s: s.add_hub_file(repo, name, data); s.add_url(url, data)``."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _serve(self, body: bool):
                path = urllib.parse.urlparse(self.path).path
                with server.lock:
                    server.requests.append((self.command, path))
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if not body:
                    return
                fault = server.faults.get(path)
                if fault == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                if fault == "stall":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    time.sleep(60)
                    return
                self.wfile.write(data)

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def add_hub_file(self, repo_id: str, filename: str, data: bytes) -> str:
        path = f"/{repo_id}/resolve/main/{filename}"
        self.files[path] = data
        return path

    def add_url(self, url: str, data: bytes) -> str:
        """Serves ``data`` for ``url`` under the mirror layout ``/<host>/<path>``."""
        path = "/" + url.split("://", 1)[-1]
        self.files[path] = data
        return path

    def count(self, path: str, method: str = "GET") -> int:
        with self.lock:
            return sum(1 for m, p in self.requests if p == path and m == method)
