"""Inside the network (playground/inspection.py): the diagram's unit maps and weights, the
per-layer gradient statistics, one-step mode, and their refusals."""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import replace

import pytest
import torch

pytest.importorskip("starlette", reason="the serve extra (starlette) is not installed")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2")

from starlette.testclient import TestClient  # noqa: E402

from core.pipeline.train import train  # noqa: E402
from core.training.loop import fit  # noqa: E402
from playground import create_app  # noqa: E402
from playground.config import parse_config  # noqa: E402
from playground.inspection import UNIT_CELLS, UNITS_SHOWN  # noqa: E402
from playground.session import Run, Session  # noqa: E402

SMALL = {"size": 200, "hidden": "6", "batch": 20, "grid": 20, "loss": "bce"}


@pytest.fixture
def app(registry):
    app = create_app(registry)
    yield app
    app.state.sessions.stop_all()


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def latest(session: Session) -> dict:
    return json.loads(session.published[3])


def wait_for(session: Session, condition, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = latest(session)
        if condition(frame):
            return frame
        time.sleep(0.005)
    last = {k: v for k, v in latest(session).items() if k not in ("heatmap", "diagram")}
    raise AssertionError(f"no such frame within {timeout} s; the last: {last}")


def unit_maps(layer: dict) -> torch.Tensor:
    """A diagram layer's maps back as activations: (shown units, cells)."""
    codes = torch.frombuffer(bytearray(base64.b64decode(layer["maps"])), dtype=torch.uint8)
    return (codes.double() / 127.5 - 1).reshape(-1, UNIT_CELLS ** 2) * layer["scale"]


# -- the diagram ---------------------------------------------------------------------------


def test_every_shown_unit_gets_its_own_map_of_its_activation_over_the_plane(registry):
    run = Run(parse_config({**SMALL, "hidden": "8,20"}), registry)
    run.train_epoch()
    run.sync_view()
    layers = run.frame(run.epoch)["diagram"]["layers"]
    assert [(l["units"], len(unit_maps(l))) for l in layers] == [(2, 2), (8, 8), (20, UNITS_SHOWN), (1, 1)]
    outputs = run.view.outputs(run.inspection.plane)  # linear, tanh, linear, tanh, linear
    for layer, out in zip(layers[1:], [outputs[1], outputs[3], outputs[4]]):
        shown = out[:, :UNITS_SHOWN].double().T  # (units, cells)
        assert torch.allclose(unit_maps(layer), shown, atol=layer["scale"] / 127 + 1e-9)
        assert layer["low"] == pytest.approx(shown.min(1).values.tolist())
    weights = [m.weight.value for m in run.model.modules if m.parameters()]
    for layer, weight in zip(layers[1:], weights):  # the lines into each layer: W[:8, :8]
        assert layer["weights"] == weight[:UNITS_SHOWN, :UNITS_SHOWN].double().tolist()
    assert layers[0]["weights"] is None and layers[0]["name"] == "input"


def test_the_maps_change_as_it_trains_and_the_diagram_can_be_switched_off(registry):
    run = Run(parse_config({**SMALL, "hidden": "8,8"}), registry)
    run.sync_view()
    before = run.frame(0)["diagram"]["layers"][1]["maps"]
    for _ in range(3):
        run.train_epoch()
    run.sync_view()
    assert run.frame(run.epoch)["diagram"]["layers"][1]["maps"] != before
    run.inspection.options["diagram"] = False
    assert "diagram" not in run.frame(run.epoch)


# -- the backward pass --------------------------------------------------------------------


def test_the_gradient_and_update_are_the_epochs_last_step_read_from_the_modules(registry):
    config = parse_config({**SMALL, "hidden": "8,8", "optimizer": "adam"})
    run, before = Run(config, registry), Run(config, registry)
    run.train_epoch()
    steps = math.ceil(run.data.x_train.shape[0] / config.batch)
    taken = []  # the same run stopped before its epoch's last step: the weights before it

    def stop():
        taken.append(1)
        return len(taken) == steps
    fit(before.model, before.loss, before.optimizer, before.data.x_train, before.data.y_train,
        epochs=1, batch_size=config.batch, generator=before.shuffle, stop=stop)
    record = run.inspection.watch.record
    layers = [m for m in run.model.modules if m.parameters()]
    old = [m for m in before.model.modules if m.parameters()]
    assert record.epoch == 1 and len(record.grad_norm) == len(layers) == 3
    for k, (mine, theirs) in enumerate(zip(layers, old)):
        grad = torch.cat([p.grad.double().flatten() for p in mine.parameters()]).norm().item()
        now = torch.cat([p.value.double().flatten() for p in mine.parameters()])
        was = torch.cat([p.value.double().flatten() for p in theirs.parameters()])
        assert record.grad_norm[k] == pytest.approx(grad, rel=1e-6)
        assert record.update_ratio[k] == pytest.approx(((now - was).norm() / was.norm()).item(),
                                                       rel=1e-5)


def first_over_last(registry, **network) -> float:
    """The first layer's gradient norm over the last's, after two epochs."""
    run = Run(parse_config({**SMALL, "size": 400, "data": "spiral", "optimizer": "sgd",
                            "lr": 0.1, **network}), registry)
    for _ in range(2):
        run.train_epoch()
    norms = run.inspection.watch.record.grad_norm
    assert len(norms) == 7
    return norms[0] / norms[-1]


def test_a_deep_sigmoid_stack_shows_vanishing_gradients_relu_and_he_do_not(registry):
    deep = "16,16,16,16,16,16"
    assert first_over_last(registry, hidden=deep, act="sigmoid", init="xavier") < 1e-2
    assert first_over_last(registry, hidden=deep, act="relu", init="he") > 1e-1


def test_one_step_flow_is_each_modules_output_gradient_as_autograd_finds_it(registry):
    config = parse_config({**SMALL, "hidden": "5,4", "act": "sigmoid", "onestep": True})
    run = Run(config, registry)
    weights = [p.value.double().clone() for p in run.model.parameters()]
    shuffle = torch.Generator()
    shuffle.set_state(run.shuffle.get_state())
    seen = []
    run.train_epoch(after_step=lambda batch, batches: seen.append(run.inspection.watch.record))
    order = torch.randperm(run.data.x_train.shape[0], generator=shuffle)[:config.batch]
    x, y = run.data.x_train[order].double(), run.data.y_train[order].double()
    # The oracle: the same network in autograd, float64, from the same first weights.
    w1, b1, w2, b2, w3, b3 = [w.requires_grad_() for w in weights]
    z1 = x @ w1 + b1
    a1 = torch.sigmoid(z1)
    z2 = a1 @ w2 + b2
    a2 = torch.sigmoid(z2)
    z3 = a2 @ w3 + b3
    for t in (z1, a1, z2, a2, z3):
        t.retain_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(z3, y).backward()
    flow = seen[0].flow  # from the loss back: z3, a2, z2, a1, z1
    assert [f["name"] for f in flow] == ["linear", "sigmoid", "linear", "sigmoid", "linear"]
    for found, tensor in zip(flow, (z3, a2, z2, a1, z1)):
        assert found["units"] == tensor.shape[1]
        assert found["mean"] == pytest.approx(tensor.grad.mean(0).tolist(), rel=1e-4, abs=1e-7)
        assert found["norm"] == pytest.approx(tensor.grad.norm().item(), rel=1e-4)
    assert len(seen) == math.ceil(run.data.x_train.shape[0] / config.batch)
    assert [r.epoch for r in seen[:2]] == pytest.approx([1 / len(seen), 2 / len(seen)])


def steps_of_one_epoch(session: Session) -> int:
    return math.ceil(session.run.data.x_train.shape[0] / session.config.batch)


def test_one_step_mode_freezes_after_each_batch_and_stays_nn_cli_trains_network(registry):
    config = parse_config({**SMALL, "hidden": "5,4", "act": "relu", "seed": 3, "onestep": True})
    session = Session(config, registry)
    try:
        steps = steps_of_one_epoch(session)
        for batch in range(1, steps + 3):  # the first epoch batch by batch, two of the second
            session.command("step")
            frame = wait_for(session, lambda f, b=batch: f["onestep"] and
                             f["onestep"]["at"] == pytest.approx(b / steps))
            assert frame["epoch"] == (batch >= steps) and frame["playing"] is False
            assert [f["name"] for f in frame["onestep"]["flow"]][0] == "linear"
        session.switch({"onestep": False})  # the second epoch runs on to its end, and waits
        frame = wait_for(session, lambda f: f["epoch"] == 2)
        assert frame["view"]["onestep"] is False and frame["onestep"] is None
        ours = session.run
        reference = train(replace(ours.settings, epochs=2), registry)
        assert ours.losses == reference.losses
        for mine, theirs in zip(ours.model.parameters(), reference.model.parameters()):
            assert torch.equal(mine.value, theirs.value)
    finally:
        session.close()
        session.join(10)
    assert not session.alive()


def test_a_frozen_batch_answers_play_reset_download_and_close(client, app):
    key = client.post("/api/sessions", json={**SMALL, "onestep": "true"}).json()["id"]
    session = app.state.sessions.runs[key]
    client.post(f"/api/sessions/{key}/control", json={"action": "step"})
    wait_for(session, lambda f: f["onestep"] is not None)
    refused = client.get(f"/api/sessions/{key}/model")
    assert refused.status_code == 409 and "in the middle of epoch 1" in refused.json()["error"]
    client.post(f"/api/sessions/{key}/control", json={"action": "reset"})
    frame = wait_for(session, lambda f: f["setup"] == 2)
    assert frame["epoch"] == 0 and session.run.epoch == 0
    client.post(f"/api/sessions/{key}/control", json={"action": "step"})
    wait_for(session, lambda f: f["onestep"] is not None)
    client.post(f"/api/sessions/{key}/control", json={"action": "play"})  # one-step mode ends
    frame = wait_for(session, lambda f: f["epoch"] >= 3 and f["playing"])
    assert frame["view"] == {"diagram": True, "onestep": False}
    client.post(f"/api/sessions/{key}/view", json={"onestep": True})  # frozen again
    frame = wait_for(session, lambda f: f["onestep"] is not None and not f["playing"])
    app.state.sessions.stop(key)
    session.join(10)
    assert not session.alive()


def test_the_view_switches_without_a_reset(client, app):
    key = client.post("/api/sessions", json={**SMALL, "diagram": False}).json()["id"]
    session = app.state.sessions.runs[key]
    client.post(f"/api/sessions/{key}/control", json={"action": "step"})
    frame = wait_for(session, lambda f: f["epoch"] == 1)
    assert "diagram" not in frame and frame["gradients"]["layers"] == ["linear + tanh 1", "linear 2"]
    assert client.post(f"/api/sessions/{key}/view", json={"diagram": True}).json() == {"ok": True}
    frame = wait_for(session, lambda f: "diagram" in f)
    assert frame["epoch"] == 1 and session.published[0] == 1  # the same run, no new setup


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("body, words", [
    ({"diagram": "maybe"}, "diagram must be true or false, got 'maybe'"),
    ({"diagram": 2}, "diagram must be true or false, got 2"),
    ({"onestep": "yes please"}, "onestep must be true or false, got 'yes please'"),
    ({"onestep": [1]}, "onestep must be true or false, got [1]"),
    ({"onestep": 1}, "onestep must be true or false, got 1"),
])
def test_a_bad_switch_in_a_configuration_is_a_400(client, body, words):
    response = client.post("/api/sessions", json={**SMALL, **body})
    assert response.status_code == 400 and response.json()["error"] == words


@pytest.mark.parametrize("body, words", [
    ({"diagram": "maybe"}, "diagram must be true or false, got 'maybe'"),
    ({"onestep": None}, "onestep must be true or false, got None"),
    ({"heatmaps": True}, "unknown view 'heatmaps'; send {\"diagram\""),
    ({}, "the body must name a view"),
    ([True], "the body must name a view"),
])
def test_a_bad_view_switch_is_a_400(client, body, words):
    key = client.post("/api/sessions", json=SMALL).json()["id"]
    response = client.post(f"/api/sessions/{key}/view", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(words) and "\n" not in error
    assert client.post("/api/sessions/nope/view", json={"diagram": True}).status_code == 404


def test_an_unarmed_epoch_reads_nothing_and_trains_the_same(registry):
    config = parse_config({**SMALL, "hidden": "5"})
    run, reference = Run(config, registry), Run(config, registry)
    run.train_epoch()
    first = run.inspection.watch.record
    run.inspection.watch.armed = False  # between frames: no gradient read
    run.train_epoch()
    assert run.inspection.watch.record is first and first.epoch == 1
    run.inspection.watch.armed = True
    run.train_epoch()
    assert run.inspection.watch.record.epoch == 3
    for _ in range(3):
        reference.train_epoch()
    assert run.losses == reference.losses
