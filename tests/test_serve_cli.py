"""`nn-cli serve`: its options, its warning, and a clear error without the serve extra."""

from __future__ import annotations

import json
import socket
import urllib.request
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")


@pytest.fixture
def served(monkeypatch):
    """Stand in for the server loop: record what `nn-cli serve` would serve."""
    import playground.serve

    calls = []

    def fake_run(server, *, open_browser, announce):
        calls.append({"host": server.config.host, "port": server.config.port,
                      "open": open_browser})
        announce(f"http://{server.config.host}:{server.config.port}/")

    monkeypatch.setattr(playground.serve, "run", fake_run)
    return calls


def invoke(*args):
    return CliRunner().invoke(app, ["serve", *args])


def test_serve_binds_localhost_by_default_and_prints_the_address(served):
    result = invoke()
    assert result.exit_code == 0, result.output
    assert served == [{"host": "127.0.0.1", "port": 8000, "open": False}]
    assert "playground at http://127.0.0.1:8000/" in result.stdout
    assert "warning" not in result.stderr


def test_serve_port_and_open(served):
    assert invoke("--port", "8123", "--open").exit_code == 0
    assert served == [{"host": "127.0.0.1", "port": 8123, "open": True}]


def test_serve_on_another_host_warns(served):
    result = invoke("--host", "0.0.0.0")
    assert result.exit_code == 0
    assert served[0]["host"] == "0.0.0.0"
    assert "warning: binding 0.0.0.0: anyone who can reach this address" in result.stderr
    assert "requests addressed to 127.0.0.1, localhost, [::1] only" in result.stderr


def test_serve_on_a_named_host_answers_that_name(served):
    result = invoke("--host", "my-laptop.local")
    assert "requests addressed to 127.0.0.1, localhost, [::1], my-laptop.local only" in result.stderr


def test_a_bad_port_is_one_line_and_status_2(served):
    result = invoke("--port", "70000")
    assert result.exit_code == 2 and served == []
    assert result.stderr.strip() == "nn-cli: error: port must be an integer from 0 to 65535, got 70000"


def test_without_the_serve_extra_it_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now fails
    result = invoke()
    assert result.exit_code == 2
    assert "nn-cli serve needs the serve extra (uvicorn is missing): pip install 'nn-scratch[serve]'" \
        in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_port_in_use_is_a_clear_error():
    from core.errors import SettingsError
    from playground.serve import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)


def test_the_real_server_answers_on_127_0_0_1(registry):
    from playground_helpers import running_server

    with running_server(registry) as (url, _):
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/status", timeout=30) as response:
            assert json.load(response)["runs"] == 0


def test_ctrl_c_with_a_tab_open_stops_cleanly(tmp_path):
    """A real `nn-cli serve`: a run streaming to a "tab", then SIGINT: it exits, no traceback."""
    import re
    import signal
    import subprocess

    nn_cli = str(Path(sys.executable).with_name("nn-cli"))
    server = subprocess.Popen([nn_cli, "serve", "--port", "0"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        url = re.search(r"(http://\S+/)", server.stdout.readline()).group(1)
        request = urllib.request.Request(url + "api/sessions", b'{"grid": 20}', method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            key = json.load(response)["id"]
        with urllib.request.urlopen(url + f"api/sessions/{key}/events", timeout=60) as events:
            assert events.readline() == b"event: setup\n"
            server.send_signal(signal.SIGINT)
            assert server.wait(30) in (0, 130)
    finally:
        server.kill()
        server.wait()
    assert "Traceback" not in server.stdout.read()
