"""The playground's server through Starlette's TestClient: every endpoint, every refusal."""

from __future__ import annotations

import base64
from dataclasses import replace
import json
import threading
import time

import pytest
import torch

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2")

from starlette.testclient import TestClient  # noqa: E402

from core.pipeline.train import train  # noqa: E402
from core.files.model_file import load_model  # noqa: E402
from playground import create_app  # noqa: E402
from playground.config import LIMITS, PlaygroundConfig, parse_config  # noqa: E402
from playground.session import Run, Session  # noqa: E402

SMALL = {"size": 200, "hidden": "6", "batch": 20, "grid": 20, "loss": "bce"}
JSON = {"content-type": "application/json"}  # what every state-changing request must say


@pytest.fixture
def app(registry):
    app = create_app(registry)
    yield app
    app.state.sessions.stop_all()


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def start(client, **config) -> str:
    response = client.post("/api/sessions", json={**SMALL, **config})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_for_epoch(app, key: str, epoch: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = json.loads(app.state.sessions.runs[key].published[3])
        if frame["epoch"] >= epoch:
            return frame
        time.sleep(0.01)
    raise AssertionError(f"no frame of epoch {epoch} within {timeout} s")


def events_until_stopped(client, app, key: str, after: float) -> str:
    """The event stream's text; the run is stopped `after` seconds in (a tab closing)."""
    timer = threading.Timer(after, app.state.sessions.stop, [key])
    timer.start()
    try:
        response = client.get(f"/api/sessions/{key}/events")
    finally:
        timer.cancel()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return response.text


def parse_events(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


# -- the page ----------------------------------------------------------------------------


def test_the_page_and_its_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "nn-scratch playground" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing fetched from elsewhere
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and kind in response.headers["content-type"]
    assert "https://" not in client.get("/static/app.js").text


def test_choices_list_every_registered_component_and_the_limits(client, registry):
    choices = client.get("/api/choices").json()
    for kind, key in (("layer", "layers"), ("activation", "activations"), ("loss", "losses"),
                      ("optimizer", "optimizers"), ("initializer", "initializers")):
        assert [c["name"] for c in choices[key]] == [e.name for e in registry.entries(kind)]
    offered = {d["name"]: d for d in choices["datasets"]}
    assert set(offered) == {"disk", "moons", "circles", "xor", "spiral", "gauss",  # the 2-D ones
                            "sine", "hills", "digits"}  # a curve, a surface, images
    assert offered["spiral"]["options"] == {"n": 1000, "arms": 2, "noise": 0.2}
    assert offered["disk"]["options"] == {}
    assert choices["limits"] == LIMITS
    assert choices["defaults"] == {**PlaygroundConfig().to_dict(), "options": "arms=3"}
    assert parse_config(choices["defaults"])  # the page's first run is one the server takes


# -- runs --------------------------------------------------------------------------------


def test_a_run_starts_streams_a_setup_and_frames_and_stops_when_its_stream_ends(client, app):
    key = start(client)
    assert client.get("/api/status").json()["runs"] == 1
    assert client.post(f"/api/sessions/{key}/control", json={"action": "play"}).json() == {"ok": True}
    events = parse_events(events_until_stopped(client, app, key, after=1.0))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "setup" and kinds.count("frame") >= 2
    setup = events[0][1]
    assert len(setup["train"]["x"]) == 100 and len(setup["test"]["label"]) == 100
    assert setup["grid"] == 20 and len(setup["domain"]) == 4
    frames = [data for kind, data in events if kind == "frame"]
    assert frames[-1]["epoch"] > frames[0]["epoch"]  # it trained while streaming
    heat = frames[-1]["heatmap"]
    assert len(base64.b64decode(heat["classes"])) == 20 * 20
    assert len(base64.b64decode(heat["strength"])) == 20 * 20
    # The stream ended (the tab closed): the run is gone, and its worker with it.
    assert client.get("/api/status").json()["runs"] == 0
    assert client.post(f"/api/sessions/{key}/control", json={"action": "play"}).status_code == 404


def test_more_than_two_classes_get_a_colour_each(registry):
    config = parse_config({**SMALL, "options": "arms=3", "loss": "cross_entropy"})
    run = Run(config, registry)
    for _ in range(20):
        run.train_epoch()
    run.sync_view()
    frame, setup = run.frame(run.epoch), run.setup()
    assert setup["classes"] == 3 and setup["class_names"] == ["arm 0", "arm 1", "arm 2"]
    assert set(setup["train"]["label"]) == {0, 1, 2}
    assert set(base64.b64decode(frame["heatmap"]["classes"])) == {0, 1, 2}
    assert frame["test_error"] < 0.6  # learning, better than guessing one of three


def test_step_pause_and_reset(client, app):
    key = start(client)
    for _ in range(3):
        assert client.post(f"/api/sessions/{key}/control", json={"action": "step"}).status_code == 200
    frame = wait_for_epoch(app, key, 3)
    assert frame["epoch"] == 3 and frame["playing"] is False
    client.post(f"/api/sessions/{key}/control", json={"action": "reset"})
    deadline = time.monotonic() + 30
    while json.loads(app.state.sessions.runs[key].published[3])["epoch"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert app.state.sessions.runs[key].published[0] == 2  # a new setup after the reset


@pytest.mark.parametrize("data", [{"data": "disk", "noise": 0}, {"data": "spiral"},
                                  {"layers": "linear:out=8,batchnorm,tanh,dropout:p=0.2,linear:out=1"},
                                  {"hidden": ""},  # no hidden layer: a linear model
                                  {"data": "spiral", "options": "arms=3", "loss": "cross_entropy"}])
def test_n_epochs_in_the_playground_are_n_epochs_of_nn_cli_train(registry, data):
    config = parse_config({**SMALL, "hidden": "5,4", "act": "relu", "seed": 3, **data})
    run = Run(config, registry)
    for _ in range(4):
        run.train_epoch()
    reference = train(replace(run.settings, epochs=4), registry)
    assert run.losses == reference.losses
    for ours, theirs in zip(run.model.parameters(), reference.model.parameters()):
        assert torch.equal(ours.value, theirs.value)


def test_frames_are_drawn_from_a_copy_that_matches_the_trained_network(registry):
    run = Run(parse_config(SMALL), registry)
    run.train_epoch()
    run.sync_view()
    frame = run.frame(run.epoch)
    run.train_epoch()  # training goes on; the copy stays as it was drawn
    d = run.data
    assert frame["epoch"] == 1 and frame["train_loss"] != run.loss.forward(run.model.forward(d.x_train), d.y_train).item()
    run.sync_view()
    expected = run.loss.forward(run.model.forward(d.x_train), d.y_train).item()
    assert run.frame(run.epoch)["train_loss"] == expected


def test_the_painter_draws_in_evaluation_mode_with_the_running_statistics(registry):
    config = parse_config({**SMALL, "layers": "linear:out=8,batchnorm,tanh,dropout:p=0.5,linear:out=1"})
    run = Run(config, registry)
    for _ in range(3):
        run.train_epoch()
    run.sync_view()
    frame = run.frame(run.epoch)
    run.model.eval()  # what the trained network says in evaluation mode
    d = run.data
    assert frame["train_loss"] == run.loss.forward(run.model.forward(d.x_train), d.y_train).item()


def test_the_worker_trains_without_the_server_waiting(registry):
    session = Session(parse_config(SMALL), registry)
    try:
        session.command("play")
        deadline = time.monotonic() + 30
        while json.loads(session.published[3])["epoch"] < 5:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        session.close()
        session.join(10)
    assert not session.alive()


def test_the_downloaded_model_is_one_nn_cli_predict_loads(client, app, tmp_path):
    from typer.testing import CliRunner

    from cli import app as cli_app

    key = start(client)
    refused = client.get(f"/api/sessions/{key}/model")
    assert refused.status_code == 409 and "train at least one epoch" in refused.json()["error"]
    client.post(f"/api/sessions/{key}/control", json={"action": "step"})
    wait_for_epoch(app, key, 1)
    response = client.get(f"/api/sessions/{key}/model")
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    path = tmp_path / "m.safetensors"
    path.write_bytes(response.content)
    model = load_model(path)
    assert model.settings.epochs == 1 and model.settings.hidden == (6,)
    (tmp_path / "rows.csv").write_text("0.5,0.5\n0.0,0.0\n")
    result = CliRunner().invoke(cli_app, ["predict", str(path), "--input", str(tmp_path / "rows.csv")])
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 3  # the header and two rows


def test_a_run_whose_stream_never_opens_is_stopped(client, app, monkeypatch):
    import playground.app

    key = start(client)
    monkeypatch.setattr(playground.app, "UNCONNECTED_SECONDS", 0.0)
    app.state.sessions.reap()
    assert client.get("/api/status").json()["runs"] == 0
    assert client.get(f"/api/sessions/{key}/model").status_code == 404


def test_delete_stops_a_run(client):
    key = start(client)
    assert client.delete(f"/api/sessions/{key}", headers=JSON).json() == {"ok": True}
    assert client.delete(f"/api/sessions/{key}", headers=JSON).status_code == 404
    assert client.get("/api/status").json()["runs"] == 0


def test_runs_past_the_limit_are_refused_with_429(client):
    for _ in range(LIMITS["max_sessions"]):
        start(client)
    response = client.post("/api/sessions", json=SMALL)
    assert response.status_code == 429 and "close a playground tab" in response.json()["error"]


# -- bad requests --------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ({"act": "nope"}, "unknown activation 'nope'"),
    ({"loss": "nope"}, "unknown loss 'nope'"),
    ({"optimizer": "nope"}, "unknown optimizer 'nope'"),
    ({"data": "nope"}, "unknown data set 'nope'; accepted (those the page draws): circles"),
    ({"data": "file"}, "unknown data set 'file'"),
    ({"data": "disk", "noise": 0.1}, "data set 'disk' has no noise; set noise to 0"),
    ({"options": "n=5"}, "options: give n in its own field"),
    ({"options": "arms=3"}, "cross_entropy"),  # bce fits two classes only
    ({"options": "arms=x"}, "arms must be an integer"),
    ({"options": "legs=3"}, "'legs'"),
    ({"options": "arms"}, "is not key=value"),
    ({"options": "y" * 401}, "options must be at most 400 characters"),
    ({"hidden": "0"}, "hidden widths must be between 1 and 256, got 0"),
    ({"hidden": "8,x"}, "hidden must be comma-separated integer widths"),
    ({"hidden": "300"}, "hidden widths must be between 1 and 256, got 300"),
    ({"hidden": "4,4,4,4,4,4,4,4,4"}, "hidden may have at most 8 layers"),
    ({"layers": "linear:out=100000,tanh,linear:out=1"}, "linear:out_features=100000 is too large"),
    ({"layers": "linear:out=8,nope,linear:out=1"}, "'nope'"),
    ({"layers": "linear:out=8,tanh,linear:out=3"}, "one output feature"),
    ({"layers": "linear:out=256,tanh,linear:out=256,tanh,linear:out=256,tanh,linear:out=1"},
     "the network has"),
    ({"layers": "x" * 401}, "at most 400 characters"),
    ({"grid": 5000}, "grid must be between 10 and 200"),
    ({"size": 10**6}, "size must be between 20 and 5000"),
    ({"size": "many"}, "size must be an integer, got 'many'"),
    ({"lr": -1}, "lr must be above 0"),
    ({"lr": "nan"}, "lr must be a finite number"),
    ({"batch": 0}, "batch must be between 1 and"),
    ({"ratio": 1.5}, "ratio must be between 0.05 and 0.95"),
    ({"noise": 3}, "noise must be between 0.0 and 1.0"),
    ({"colour": "red"}, "unknown setting 'colour'"),
    ({"size": True}, "size must be an integer, got True"),
])
def test_a_bad_configuration_is_a_400_with_one_line_naming_it(client, body, words):
    response = client.post("/api/sessions", json={**SMALL, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error and "\n" not in error
    assert client.get("/api/status").json()["runs"] == 0


@pytest.mark.parametrize("raw, code, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"{" + b" " * 20_000 + b"}", 413, "at most 16384"),
])
def test_a_malformed_body_is_refused(client, raw, code, words):
    response = client.post("/api/sessions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == code and words in response.json()["error"]


@pytest.mark.parametrize("body, words", [
    ({"action": "fly"}, "unknown action 'fly'"),
    ({"action": 3}, "unknown action '3'"),
    ({"go": "play"}, 'the body must be {"action"'),
])
def test_a_bad_control_is_a_400(client, body, words):
    key = start(client)
    response = client.post(f"/api/sessions/{key}/control", json=body)
    assert response.status_code == 400 and words in response.json()["error"]


@pytest.mark.parametrize("method, path", [
    ("get", "/api/sessions/nope/events"), ("get", "/api/sessions/nope/model"),
    ("post", "/api/sessions/nope/control"), ("delete", "/api/sessions/nope"),
    ("get", "/api/nothing"),
])
def test_unknown_runs_and_routes_are_404_json(client, method, path):
    kwargs = {"json": {"action": "play"}} if method == "post" else {}
    kwargs = {"headers": JSON} if method == "delete" else kwargs
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == 404 and response.json()["error"]


def test_a_wrong_method_is_405_json(client):
    response = client.get("/api/sessions")
    assert response.status_code == 405 and response.json()["error"]
