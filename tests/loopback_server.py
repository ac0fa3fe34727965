"""One HTTP server on 127.0.0.1 (a free port) in a thread, as a context manager: the lifecycle that the
single-server doubles (`tests/loopback_github.py`, `tests/loopback_registries.py`) share. Their request
handler finds the double as `self.server.double`."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar


class LoopbackServer:
    handler: ClassVar[type[BaseHTTPRequestHandler]]  # each double's request handler
    _server: ThreadingHTTPServer | None = None

    def __enter__(self):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler)
        self._server.daemon_threads = True
        self._server.double = self  # type: ignore[attr-defined]
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, f"{type(self).__name__} is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"
