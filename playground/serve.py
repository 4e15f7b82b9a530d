"""Running the app under uvicorn: bind first, then say where, then (if asked) open a browser."""

from __future__ import annotations

import socket
import webbrowser
from collections.abc import Callable

from core.errors import SettingsError


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); a clear error when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SettingsError(f"cannot listen on {host}:{port} ({e.strerror}); try another --port") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(app, host: str, port: int):
    """A uvicorn server that, told to stop (Ctrl-C), first stops every run, so that their
    event streams end and the open tabs do not hold the shutdown."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.sessions.stop_all()
            super().handle_exit(sig, frame)

    return Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                 timeout_graceful_shutdown=5))


def run(server, *, open_browser: bool, announce: Callable[[str], None]) -> None:
    """Serve until Ctrl-C; the address is known (port 0 included) before the first request."""
    sock = bind(server.config.host, server.config.port)
    url = url_of(sock)
    announce(url)
    if open_browser:
        webbrowser.open(url)
    server.run(sockets=[sock])
