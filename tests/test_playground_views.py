"""The playground's regression views, its digits with a drawing, and its training controls
(penalty, speed, log scale, discretised output): every new field, through the server."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import replace

import pytest
import torch

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2")
pytest.importorskip("sklearn", reason="digits come from scikit-learn")

from starlette.testclient import TestClient  # noqa: E402

from core.pipeline.train import train  # noqa: E402
from playground import create_app  # noqa: E402
from playground.config import parse_config  # noqa: E402
from playground.session import Run  # noqa: E402

SMALL = {"size": 200, "hidden": "6", "batch": 20, "grid": 20, "loss": "bce"}
CURVE = {"data": "sine", "loss": "mse", "noise": 0.1}
SURFACE = {"data": "hills", "loss": "mse", "noise": 0.1}
CNN = "conv2d:out=4,k=3,relu,maxpool2d:k=2,flatten,linear:out=10"
DIGITS = {"data": "digits", "noise": 0, "loss": "cross_entropy", "layers": CNN, "ratio": 0.3}


@pytest.fixture(scope="module")
def app():
    from core import default_registry

    app = create_app(default_registry())
    yield app
    app.state.sessions.stop_all()


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client
    app.state.sessions.stop_all()


def start(client, **config) -> str:
    response = client.post("/api/sessions", json={**SMALL, **config})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def published(app, key: str, until, timeout: float = 30) -> dict:
    """The first published frame (with its setup) for which `until(frame)` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, setup, _, frame = app.state.sessions.runs[key].published
        frame = json.loads(frame)
        if until(frame):
            return {**frame, "setup": json.loads(setup)}
        time.sleep(0.01)
    raise AssertionError(f"no such frame within {timeout} s")


def floats(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.float32)


# -- the same network as nn-cli train's ---------------------------------------------------


@pytest.mark.parametrize("data", [
    {"penalty": "l2", "rate": 0.01}, {"penalty": "l1", "rate": 0.003},
    {**CURVE, "penalty": "l2", "rate": 0.001}, SURFACE, {**DIGITS, "size": 1000},
])
def test_n_epochs_with_the_new_data_and_the_penalty_are_n_epochs_of_nn_cli_train(registry, data):
    config = parse_config({**SMALL, "hidden": "5,4", "act": "relu", "seed": 3, **data})
    run = Run(config, registry)
    for _ in range(3):
        run.train_epoch()
    reference = train(replace(run.settings, epochs=3), registry)
    expected = {"l1": 0.0, "l2": 0.0, **config.penalty_settings()}
    assert {"l1": run.settings.l1, "l2": run.settings.l2} == expected
    assert run.losses == reference.losses
    for ours, theirs in zip(run.model.parameters(), reference.model.parameters()):
        assert torch.equal(ours.value, theirs.value)


def test_the_penalty_changes_the_network(registry):
    """A penalty that reaches the trainer: the same run with it ends with smaller weights."""
    def weights(**penalty):
        run = Run(parse_config({**SMALL, "seed": 1, **penalty}), registry)
        for _ in range(5):
            run.train_epoch()
        return sum(p.value.abs().sum().item() for p in run.model.parameters())

    assert weights(penalty="l1", rate=0.01) < weights() 
    assert weights(penalty="l2", rate=0.01) < weights()
    assert weights(penalty="none", rate=0.01) == weights()  # a rate alone is no penalty


# -- what the page draws -----------------------------------------------------------------


def test_a_curve_is_the_network_at_the_grid_in_the_targets_units(client, app):
    key = start(client, **CURVE, grid=50)
    client.post(f"/api/sessions/{key}/control", json={"action": "step"})
    frame = published(app, key, lambda f: f["epoch"] >= 1)
    setup = frame["setup"]
    assert setup["view"] == "curve" and setup["task"] == "regression"
    assert len(setup["train"]["x"]) == len(setup["train"]["value"]) == 100
    low, high = setup["domain"]
    assert low < min(setup["train"]["x"]) and max(setup["train"]["x"]) < high
    curve = floats(frame["curve"])
    assert curve.shape == (50,) and torch.isfinite(curve).all()
    run = app.state.sessions.runs[key].run  # the same values from the trained network
    xs = torch.linspace(low, high, 101, dtype=torch.float64)[1::2].view(-1, 1)  # cell centres
    from core.data import preprocess
    out = run.view.forward(preprocess.apply(run.data.preprocessing, xs.float()).float())
    expected = preprocess.target_output(run.data.preprocessing, out)[:, 0]
    torch.testing.assert_close(curve.double(), expected, atol=1e-5, rtol=1e-5)


def test_a_surface_is_one_value_per_cell_and_its_test_error_falls(client, app):
    key = start(client, **SURFACE, hidden="16,16", act="tanh", size=600)
    first = published(app, key, lambda f: True)
    assert first["setup"]["view"] == "surface" and len(first["setup"]["domain"]) == 4
    assert floats(first["surface"]).shape == (20 * 20,)
    client.post(f"/api/sessions/{key}/control", json={"action": "play"})
    later = published(app, key, lambda f: f["epoch"] >= 30, timeout=60)
    assert later["test_error"] < 0.7 * first["test_error"]  # the RMSE, in the target's units


def test_a_drawn_digit_gets_class_probabilities_that_sum_to_one(client, app, tmp_path):
    key = start(client, **DIGITS, batch=32)
    first = published(app, key, lambda f: True)
    assert first["setup"]["view"] == "image" and first["probe"] is None
    assert first["setup"]["image"] == {"shape": [1, 8, 8], "low": 0.0, "high": 16.0}
    one = [0.0] * 64
    for row in range(1, 7):  # a vertical stroke: a one
        one[row * 8 + 4] = 16.0
    assert client.post(f"/api/sessions/{key}/probe", json={"pixels": one}).status_code == 200
    drawn = published(app, key, lambda f: f["probe"] is not None)
    assert len(drawn["probe"]) == 10 and sum(drawn["probe"]) == pytest.approx(1, abs=1e-9)
    for _ in range(3):
        client.post(f"/api/sessions/{key}/control", json={"action": "step"})
    trained = published(app, key, lambda f: f["epoch"] >= 3)
    assert trained["probe"] != drawn["probe"]  # the network's, as it trains
    run = app.state.sessions.runs[key].run
    x = run.data.x_train[:1]  # the same forward as the server's on a training digit
    from playground.views import probabilities
    pixels = run.raw.x_train[0]
    expected = run.view_loss.probabilities(run.view.forward(x).double())[0]
    torch.testing.assert_close(torch.tensor(probabilities(run, pixels), dtype=torch.float64), expected,
                               atol=1e-6, rtol=1e-6)
    # The downloaded model (what nn-cli predict loads) gives the drawing the same probabilities.
    response = client.get(f"/api/sessions/{key}/model")
    assert response.status_code == 200
    path = tmp_path / "digits.safetensors"
    path.write_bytes(response.content)
    from core.files.model_file import load_model
    predicted = load_model(path).probabilities(torch.tensor([one], dtype=torch.float64))[0]
    torch.testing.assert_close(torch.tensor(trained["probe"], dtype=torch.float64),
                               predicted.double(), atol=1e-6, rtol=1e-6)
    # A reset keeps the drawing.
    client.post(f"/api/sessions/{key}/control", json={"action": "reset"})
    again = published(app, key, lambda f: f["epoch"] == 0)
    assert again["probe"] == drawn["probe"]  # the same seed: the same first network


def test_the_cnn_is_held_to_the_playground_limits(client):
    wide = "conv2d:out=200,k=3,pad=1,relu,conv2d:out=200,k=3,pad=1,relu,flatten,linear:out=10"
    response = client.post("/api/sessions", json={**SMALL, **DIGITS, "layers": wide})
    assert response.status_code == 400 and "the network has" in response.json()["error"]
    deep = ",".join(["conv2d:out=64,k=3,pad=1,relu"] * 2 + ["relu"] * 40 + ["flatten,linear:out=10"])
    response = client.post("/api/sessions", json={**SMALL, **DIGITS, "layers": deep, "size": 5000,
                                                        "batch": 1000})
    assert response.status_code == 400 and "MB" in response.json()["error"]
    # What a convolution keeps for backward counts too (its padded input: 6400 numbers a row
    # for 64 channels of 8x8 padded by 1), beyond its output (4096): batches of 600 would
    # hold about 220 MB (measured: peak resident memory over one epoch), not the 100 MB
    # that the layers' outputs alone come to.
    two = "conv2d:out=64,k=3,pad=1,relu,conv2d:out=64,k=3,pad=1,relu,flatten,linear:out=10"
    body = {**SMALL, **DIGITS, "layers": two, "size": 5000, "ratio": 0.9}
    response = client.post("/api/sessions", json={**body, "batch": 600})
    assert response.status_code == 400 and "would hold about" in response.json()["error"]
    assert client.post("/api/sessions", json={**body, "batch": 200}).status_code == 201


def test_speed_is_epochs_per_frame_and_changes_without_a_reset(client, app):
    key = start(client, speed=7)
    client.post(f"/api/sessions/{key}/control", json={"action": "play"})
    seen = set()
    deadline = time.monotonic() + 20
    while len(seen) < 4 and time.monotonic() < deadline:
        seen.add(json.loads(app.state.sessions.runs[key].published[3])["epoch"])
        time.sleep(0.005)
    assert len(seen) >= 4 and all(epoch % 7 == 0 for epoch in seen), seen
    response = client.post(f"/api/sessions/{key}/speed", json={"speed": 1})
    assert response.status_code == 200 and app.state.sessions.runs[key].config.speed == 1
    now = json.loads(app.state.sessions.runs[key].published[3])["epoch"]
    later = published(app, key, lambda f: f["epoch"] > now and f["epoch"] % 7)
    assert later["epoch"] > now  # still the same run: no reset


# -- bad requests: each new field ----------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ({"penalty": "l3"}, "penalty must be one of none, l1, l2, got 'l3'"),
    ({"penalty": 1}, "penalty must be text"),
    ({"rate": -0.1}, "rate must be between 0 and 10.0, got -0.1"),
    ({"rate": "lots"}, "rate must be a number, got 'lots'"),
    ({"rate": "inf"}, "rate must be a finite number"),
    ({"speed": 5000}, "speed must be between 0 (as fast as the server trains) and 1000"),
    ({"speed": 1.5}, "speed must be an integer, got 1.5"),
    ({"logscale": "maybe"}, "logscale must be true or false, got 'maybe'"),
    ({"discretize": 1}, "discretize must be true or false, got 1"),
    ({**CURVE, "loss": "cross_entropy"}, "cross_entropy"),  # a class loss on a regression
    ({**DIGITS, "noise": 0.2}, "data set 'digits' has no noise; set noise to 0"),
    ({**DIGITS, "layers": "conv2d:out=4,k=9,flatten,linear:out=10"}, "does not fit"),
])
def test_a_bad_new_field_is_a_400_with_one_line_naming_it(client, body, words):
    response = client.post("/api/sessions", json={**SMALL, **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert words in error and "\n" not in error


@pytest.mark.parametrize("body, words", [
    ({"pixels": [0] * 63}, "pixels must be a list of 64 numbers (1 x 8 x 8), got 63"),
    ({"pixels": "0" * 64}, "pixels must be a list of 64 numbers (1 x 8 x 8), got str"),
    ({"pixels": [0] * 63 + [17]}, "pixels[63] must be a number between 0 and 16 (the data's scale)"),
    ({"pixels": [0] * 63 + [None]}, "pixels[63] must be a number between 0 and 16"),
    ({"pixels": [True] + [0] * 63}, "pixels[0] must be a number"),
    ({"image": [0] * 64}, 'the body must be {"pixels": [64 numbers]}'),
])
def test_a_bad_drawing_is_a_400(client, body, words):
    key = start(client, **DIGITS)
    response = client.post(f"/api/sessions/{key}/probe", json=body)
    assert response.status_code == 400, response.text
    assert words in response.json()["error"] and "\n" not in response.json()["error"]


def test_a_drawing_for_a_run_without_images_is_a_400(client):
    key = start(client)
    response = client.post(f"/api/sessions/{key}/probe", json={"pixels": [0] * 64})
    assert response.status_code == 400
    assert "has no images to draw (its view is a plane); pick digits" in response.json()["error"]


@pytest.mark.parametrize("body, words", [
    ({"speed": -1}, "speed must be between 0"),
    ({"speed": "fast"}, "speed must be an integer, got 'fast'"),
    ({"fast": 1}, 'the body must be {"speed": epochs per frame}'),
])
def test_a_bad_speed_is_a_400(client, app, body, words):
    key = start(client)
    response = client.post(f"/api/sessions/{key}/speed", json=body)
    assert response.status_code == 400 and words in response.json()["error"]
    assert app.state.sessions.runs[key].config.speed == 0
