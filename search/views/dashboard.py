"""optuna-dashboard as a read-only view: its write API is refused.

optuna-dashboard 0.21 serves a JSON API that also deletes studies, tells trials and edits
notes (DELETE /api/studies/<id> erases a study). A view must never change what it shows,
so every request but GET and HEAD is answered 405 before it reaches the dashboard.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

READ_METHODS = frozenset({"GET", "HEAD"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def read_only(app: WSGIApp) -> WSGIApp:
    """``app`` with every method but GET and HEAD refused (405 Method Not Allowed)."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() not in READ_METHODS:
            body = b"finesweep serves this dashboard read-only\n"
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain"),
                                                      ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return guarded


def serve(url: str, *, host: str, port: int) -> None:
    """Serve the dashboard of the study storage ``url`` until interrupted."""
    # Imported here: optuna-dashboard is slow to import.
    from optuna_dashboard import wsgi

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    with make_server(host, port, read_only(wsgi(url)), handler_class=QuietHandler) as server:
        server.serve_forever()
