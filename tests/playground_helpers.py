"""Shared by the playground tests: a real server on 127.0.0.1 in a thread."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


@contextmanager
def running_server(registry, **app_options):
    """Yield the base URL of the playground served by uvicorn on a free local port."""
    from playground import create_app
    from playground.serve import bind, make_server, url_of

    app = create_app(registry, **app_options)
    server = make_server(app, "127.0.0.1", 0)
    sock = bind("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the playground server did not start")
        time.sleep(0.05)
    try:
        yield url_of(sock), app
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
