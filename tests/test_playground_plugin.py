"""A plugin's components (a layer, an activation, a data set) show up among the
playground's choices and train there.

From the checkout (the example package on sys.path, loaded as `--plugin` would) always;
installed through its entry point where it is installed (.ci/run installs it in a clean
environment and runs this file there), skipped otherwise.
"""

from __future__ import annotations

import importlib.metadata
import json
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2")

from starlette.testclient import TestClient  # noqa: E402

from core import load_registry  # noqa: E402
from playground import create_app  # noqa: E402

LOCAL = "http://127.0.0.1"  # a Host name the playground answers (guards.allowed_hosts)
PACKAGE = Path(__file__).resolve().parent.parent / "examples" / "nn-scratch-extras"


def _installed() -> bool:
    """The package is installed as a distribution (its entry point), not merely importable:
    other test modules put its source folder on sys.path."""
    try:
        importlib.metadata.distribution("nn-scratch-extras")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


INSTALLED = _installed()


def trains_with_the_plugin(registry, plugin: str) -> None:
    app = create_app(registry)
    with TestClient(app, base_url=LOCAL) as client:
        choices = client.get("/api/choices").json()
        assert {c["name"]: c["plugin"] for c in choices["layers"]}["prelu"] == plugin
        assert "swish" in [c["name"] for c in choices["activations"]]
        offered = {d["name"]: d for d in choices["datasets"]}
        assert offered["checkerboard"]["plugin"] == plugin  # a plugin's data set, offered too
        assert offered["checkerboard"]["options"] == {"n": 1000, "squares": 4, "noise": 0.0}
        for config in ({"layers": "linear:out=8,prelu:alpha=0.1,linear:out=8,swish,linear:out=1"},
                       {"hidden": "8", "act": "swish"},
                       {"data": "checkerboard", "options": "squares=2", "noise": 0.05}):
            response = client.post("/api/sessions", json={"size": 200, "grid": 20, "loss": "bce",
                                                           **config})
            assert response.status_code == 201, response.text
            key = response.json()["id"]
            for _ in range(2):
                client.post(f"/api/sessions/{key}/control", json={"action": "step"})
            deadline = time.monotonic() + 30
            while (frame := json.loads(app.state.sessions.runs[key].published[3]))["epoch"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert frame["error"] is None and 0 <= frame["test_error"] <= 1
            assert frame["train_loss"] == frame["train_loss"]  # finite, not NaN
        app.state.sessions.stop_all()


def test_a_plugin_given_by_name_is_offered_and_trains(monkeypatch):
    if INSTALLED:
        pytest.skip("the example package is installed; the entry-point test covers it")
    monkeypatch.syspath_prepend(str(PACKAGE))
    registry = load_registry(["nn_scratch_extras"], autoload=False)
    trains_with_the_plugin(registry, "nn_scratch_extras")


@pytest.mark.skipif(not INSTALLED, reason="the example package nn-scratch-extras is not "
                    "installed (.ci/run installs it and runs this test)")
def test_an_installed_plugin_package_is_offered_and_trains():
    trains_with_the_plugin(load_registry(), "extras")
    with TestClient(create_app(load_registry()), base_url=LOCAL) as client:  # the page ships in the package
        assert "nn-scratch playground" in client.get("/").text
        assert client.get("/static/app.js").status_code == 200
