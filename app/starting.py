"""The port answers within a fraction of a second of ``python -m app``: a "starting" page until the app is built.

Importing Dash, plotly, pandas and SQLAlchemy and building the app takes about 3 s on a 2-core
machine; a browser pointed at the port meanwhile would see "connection refused". So the port is
bound first, by a bare werkzeug server that imports nothing more: it answers every request with
HTTP 503 and a page that reloads itself, and hands every request to the real app once the main
thread has built it. 503 (not 200) keeps health checks and scripts waiting for the real app.
"""
from __future__ import annotations

import socket
import threading

from werkzeug.serving import make_server, select_address_family

#: reloads itself every second; the real page (or the "preparing the demo" page) follows
STARTING_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>ActiveSeg is starting</title>
<meta http-equiv="refresh" content="1"></head>
<body style="font-family: sans-serif; margin: 4em; color: #333">
<h2 id="activeseg-starting">ActiveSeg is starting&hellip;</h2>
<p>This page opens the app by itself in a few seconds.</p>
</body></html>
"""


class StartingDispatcher:
    """WSGI: the starting page until ``app`` is set, then the app for every request."""

    def __init__(self):
        self.app = None

    def __call__(self, environ, start_response):
        app = self.app
        if app is not None:
            return app(environ, start_response)
        start_response("503 Service Unavailable", [("Content-Type", "text/html; charset=utf-8"),
                                                   ("Retry-After", "1"), ("Cache-Control", "no-store")])
        return [STARTING_PAGE]


class StartingServer:
    """A threaded werkzeug server on ``host:port``, serving from a background thread at once."""

    def __init__(self, host: str, port: int):
        self.dispatcher = StartingDispatcher()
        # bound here, not by werkzeug, which prints and exits 1 on a busy port: OSError is the caller's
        family = select_address_family(host, port)
        with socket.create_server((host, port), family=family) as sock:
            self._server = make_server(host, port, self.dispatcher, threaded=True, fd=sock.fileno())
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (the one the OS chose for port 0)."""
        return self._server.port

    def start(self) -> "StartingServer":
        self._thread.start()
        return self

    def serve(self, wsgi_app) -> None:
        """Hand every later request to ``wsgi_app``; block until Ctrl+C or ``stop``."""
        self.dispatcher.app = wsgi_app
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        if self._thread.is_alive():        # shutdown() waits for serve_forever: never call it unstarted
            self._server.shutdown()
        self._server.server_close()
