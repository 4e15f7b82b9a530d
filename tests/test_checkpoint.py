"""Checkpoints, resume and divergence: a resumed run ends bit for bit as the uninterrupted
one, even after SIGKILLs at random points; a diverging run stops with one clear line."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import types

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cli import app
from core import DivergenceError, SettingsError, TrainSettings, default_registry, hookimpl, train
from core.files.atomic import temp_files
from core.files.checkpoint import Checkpointing, read_checkpoint
from core.errors import ModelFileError
from core.files.model_file import save_model
from plugins.optimizers import SGD, Adam

SMALL = dict(hidden=(6, 5), n_train=200, n_test=100, seed=2)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def weights(model):
    return [p.value.clone() for p in model.parameters()]


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


# -- optimizer state -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "options"),
    [(SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}), (SGD, {}),
     (Adam, {"weight_decay": 0.01})],
)
def test_optimizer_state_dict_continues_exactly(factory, options):
    """Two optimizers, one restored from the other's state_dict, take identical steps."""
    from core import Parameter

    gen = torch.Generator().manual_seed(0)
    grads = [[torch.randn(3, 2, generator=gen, dtype=torch.float64),
              torch.randn(2, generator=gen, dtype=torch.float64)] for _ in range(6)]

    def make():
        g = torch.Generator().manual_seed(1)
        params = [Parameter.of(torch.randn(3, 2, generator=g, dtype=torch.float64)),
                  Parameter.of(torch.randn(2, generator=g, dtype=torch.float64))]
        return params, factory(params, lr=0.05, **options)

    def step(params, opt, grad):
        opt.zero_grad()
        for p, g in zip(params, grad):
            p.grad += g
        opt.step()

    params, opt = make()
    for grad in grads[:3]:
        step(params, opt, grad)
    state = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in opt.state_dict().items()}
    twin_params, twin = make()
    for p, q in zip(twin_params, params):
        p.value.copy_(q.value)
    twin.load_state_dict(state)
    for grad in grads[3:]:
        step(params, opt, grad)
        step(twin_params, twin, grad)
    assert_same_weights([p.value for p in params], [p.value for p in twin_params])
    if options:  # momentum and Adam carry state between steps
        assert state


def test_optimizer_state_of_the_wrong_shape_is_refused():
    from core import Parameter, StateError

    params = [Parameter.of(torch.zeros(3))]
    with pytest.raises(StateError, match=r"shape \[4\]"):
        SGD(params, momentum=0.9).load_state_dict({"velocity.0": torch.zeros(4)})
    two = params + [Parameter.of(torch.zeros(2))]
    with pytest.raises(StateError, match="every velocity.0 .. velocity.1 or none"):
        SGD(two, momentum=0.9).load_state_dict({"velocity.0": torch.zeros(3)})
    with pytest.raises(StateError, match="needs keys"):
        Adam(params).load_state_dict({"steps": 1})


# -- resume through the Python API -----------------------------------------------------


@pytest.mark.parametrize("optimizer, options", [
    ("sgd", {}), ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("adam", {}), ("adam", {"weight_decay": 0.01}),
])
def test_resume_ends_bit_identical_to_the_uninterrupted_run(tmp_path, optimizer, options):
    settings = TrainSettings(epochs=5, optimizer=optimizer, lr=0.05, optimizer_args=options,
                             batch_size=20, **SMALL)
    whole = train(settings)
    path = tmp_path / "run.ckpt.safetensors"
    train(settings, checkpoint=Checkpointing(path, every=3))  # leaves the epoch-3 checkpoint
    state = read_checkpoint(path)
    assert state.epoch == 3 and state.losses == whole.losses[:3]
    resumed = train(state.settings, resume=state)
    assert resumed.losses == whole.losses
    assert_same_weights(weights(resumed.model), weights(whole.model))
    assert (resumed.train_error, resumed.test_error) == (whole.train_error, whole.test_error)


def test_checkpoint_holds_optimizer_and_generator_state(tmp_path):
    path = tmp_path / "c.safetensors"
    train(TrainSettings(epochs=2, optimizer="adam", batch_size=10, **SMALL),
          checkpoint=Checkpointing(path, 1))
    tensors = load_file(path)
    assert tensors["rng.shuffle"].dtype == torch.uint8
    assert {"optimizer.mean.0", "optimizer.square.5"} <= tensors.keys()
    assert read_checkpoint(path).file.header["training"]["optimizer_numbers"] == {"steps": 40}


def test_resume_refuses_other_settings_and_model_files(tmp_path):
    path = tmp_path / "c.safetensors"
    settings = TrainSettings(epochs=2, optimizer="sgd", **SMALL)
    result = train(settings, checkpoint=Checkpointing(path, 1))
    with pytest.raises(SettingsError, match="settings differ"):
        train(TrainSettings(epochs=3, optimizer="sgd", **SMALL), resume=read_checkpoint(path))
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:-64])
    result_cli = invoke("train", "--resume", truncated)
    assert result_cli.exit_code == 2 and "t.safetensors: not a model file" in result_cli.stderr
    tensors = load_file(path)
    tensors["optimizer.velocity.0"] = torch.zeros(3)  # plain SGD keeps no velocity
    header = dict(read_checkpoint(path).file.header)
    del header["checksum"]  # a version-1 file from before checksums: the optimizer check refuses
    header["format_version"] = 1
    bad = tmp_path / "bad.safetensors"
    save_file(tensors, bad, metadata={"nn_scratch": json.dumps(header)})
    with pytest.raises(ModelFileError, match="optimizer state does not fit.*shape"):
        train(settings, resume=read_checkpoint(bad))
    model = save_model(tmp_path / "m.safetensors", result)
    with pytest.raises(ModelFileError, match="is a 'model' file; expected a 'checkpoint'"):
        read_checkpoint(model)
    result = invoke("train", "--resume", model)
    assert result.exit_code == 2 and "expected a 'checkpoint' file" in result.stderr


def test_a_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """The process dies (here: an exception from fsync) halfway through writing the epoch-2
    checkpoint: the epoch-1 checkpoint is still there, whole, and no temp file is left."""
    import core.files.atomic

    path = tmp_path / "c.safetensors"
    calls = []
    real_fsync = os.fsync

    def dying_fsync(fd):
        calls.append(fd)
        if len(calls) == 3:  # epoch 1: file, directory; epoch 2: the file, bytes written
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(core.files.atomic.os, "fsync", dying_fsync)
    with pytest.raises(KeyboardInterrupt):
        train(TrainSettings(epochs=3, **SMALL), checkpoint=Checkpointing(path, 1))
    assert read_checkpoint(path).epoch == 1
    assert temp_files(path) == []


def test_temp_files_a_killed_run_left_are_removed_when_checkpointing_starts(tmp_path):
    path = tmp_path / "c.safetensors"
    stale = tmp_path / ".c.safetensors.k1ll_3d0.tmp"  # as mkstemp names them
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.safetensors.k1ll_3d0.tmp"
    other.write_bytes(b"someone else's")
    train(TrainSettings(epochs=1, **SMALL), checkpoint=Checkpointing(path, 1))
    assert not stale.exists() and other.exists() and read_checkpoint(path).epoch == 1


# -- divergence ------------------------------------------------------------------------


class PoisonedSGD(SGD):
    """Plain SGD that writes NaN into a weight at step 50 (epoch 3 of 20 steps)."""

    def step(self):
        super().step()
        self.steps = getattr(self, "steps", 0) + 1
        if self.steps == 50:
            self.parameters[0].value[0, 0] = math.nan


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    registry = default_registry()
    registry.add_plugin(types.SimpleNamespace(
        register_optimizers=hookimpl(lambda register: register("poisoned", PoisonedSGD))
    ), name="poison")
    path = tmp_path / "c.safetensors"
    settings = TrainSettings(epochs=6, optimizer="poisoned", lr=0.1, batch_size=10, **SMALL)
    with pytest.raises(DivergenceError) as caught:
        train(settings, registry, checkpoint=Checkpointing(path, 1))
    message = str(caught.value)
    assert "diverged at epoch 3" in message and "--lr 0.01" in message
    assert "last good checkpoint (epoch 2)" in message and str(path) in message
    state = read_checkpoint(path, registry)
    assert state.epoch == 2 and all(math.isfinite(v) for v in state.losses)


def test_cli_divergence_is_one_line_with_epoch_and_lower_lr(tmp_path):
    save = tmp_path / "m.safetensors"
    result = invoke("train", "--optimizer", "sgd", "--schedule", "constant", "--lr", "1e6",
                    "--epochs", "5", "--hidden", "8,8", "--json", "--save", save)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("nn-cli: error: training diverged at epoch 1")
    assert "--lr 100000" in lines[-1] and "Traceback" not in result.output
    assert result.stdout == "" and not save.exists()


# -- checkpoint options of nn-cli train ------------------------------------------------


def test_cli_checkpoint_every_writes_beside_save_and_resume_continues(tmp_path):
    save = tmp_path / "m.safetensors"
    args = ["--epochs", "4", "--hidden", "6", "--json"]
    whole = invoke("train", *args, "--save", save, "--checkpoint-every", "3")
    assert whole.exit_code == 0, whole.output
    checkpoint = tmp_path / "m.ckpt.safetensors"
    assert read_checkpoint(checkpoint).epoch == 3
    again = tmp_path / "again.safetensors"
    resumed = invoke("train", "--resume", checkpoint, "--save", again, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout) == json.loads(whole.stdout)
    assert "epoch 1/4" not in resumed.stderr and "epoch 4/4" in resumed.stderr
    assert again.read_bytes() == save.read_bytes()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--checkpoint-every", "2"], ["--checkpoint-every needs --checkpoint PATH"]),
        (["--checkpoint-every", "-1", "--checkpoint", "c"], ["checkpoint-every", "-1", ">= 0"]),
        (["--resume", "c.safetensors", "--lr", "0.5", "--hidden", "4"], ["drop --hidden, --epochs, --lr"]),
        (["--checkpoint", "/nonexistent-dir/c"], ["does not exist"]),
        (["--checkpoint", "m.st", "--save", "m.st"], ["same file 'm.st'"]),
    ],
)
def test_cli_bad_checkpoint_options(args, fragments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths: --save's lock file lands here
    result = invoke("train", "--epochs", "1", *args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("nn-cli: error: ")
    for fragment in fragments:
        assert fragment in line


# -- SIGKILL at random points ----------------------------------------------------------

EPOCHS = 40
KILL_ARGS = ["--hidden", "8,8", "--epochs", str(EPOCHS), "--batch-size", "20", "--seed", "1",
             "--optimizer", "adam", "--lr", "0.01", "--json"]


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread here and in child processes: on a busy machine, threads that wait
    for each other make these tiny steps many times slower; results are the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path, one_thread):
    """Kill a checkpointing `nn-cli train` with SIGKILL three times, resume each time, and
    compare with the uninterrupted run: same weights and losses bit for bit, every
    checkpoint seen on disk loads, and no temporary file is left."""
    reference = tmp_path / "reference.safetensors"
    uninterrupted = invoke("train", *KILL_ARGS, "--save", reference)
    assert uninterrupted.exit_code == 0, uninterrupted.output

    seed = random.randrange(2**32)
    rng = random.Random(seed)
    checkpoint, model = tmp_path / "run.ckpt.safetensors", tmp_path / "run.safetensors"
    command = [sys.executable, "-m", "cli", "train"]
    args = [*KILL_ARGS, "--checkpoint", checkpoint, "--checkpoint-every", "1", "--save", model]
    seen, kills = [], 0
    while True:
        process = subprocess.Popen([*command, *map(str, args)], cwd=tmp_path, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        done = read_checkpoint(checkpoint).epoch if checkpoint.exists() else 0
        # Ten epochs or more left after the kill point: a reader that lags behind the
        # child on a busy machine still kills it mid-run.
        target = rng.randint(done + 1, min(done + 6, EPOCHS - 10)) if kills < 3 else None
        for line in process.stderr:  # "epoch k/N ..." once checkpoint k is on disk
            if not line.startswith("epoch "):  # "training ...": what it trains, first
                continue
            seen.append(read_checkpoint(checkpoint).epoch)  # a complete file, always
            if target is not None and line.startswith(f"epoch {target}/"):
                time.sleep(rng.uniform(0, 0.01))  # land anywhere in the next epoch or write
                process.send_signal(signal.SIGKILL)
                break
        out, err = process.communicate(timeout=120)
        if target is None:
            assert process.returncode == 0, err
            break
        assert process.returncode == -signal.SIGKILL, ("kill missed: the run ended first", seed, err)
        kills += 1
        assert read_checkpoint(checkpoint).epoch >= target, seed  # intact after the kill
        args = ["--resume", checkpoint, "--save", model, "--json"]
    assert json.loads(out) == json.loads(uninterrupted.stdout), seed
    final, expected = load_file(model), load_file(reference)
    assert final.keys() == expected.keys()
    for name in final:
        assert torch.equal(final[name], expected[name]), (seed, name)
    assert model.read_bytes() == reference.read_bytes()
    assert temp_files(checkpoint) == [] and temp_files(model) == []
    assert kills == 3 and max(seen) == EPOCHS and seen == sorted(seen), seed


def test_default_optimizer_at_a_huge_learning_rate_stops_though_the_loss_stays_finite():
    """Adam at --lr 1e6 never reaches NaN (its steps are normalised) but the loss explodes
    to millions: that too stops with the message, for one run and for an ensemble."""
    from typer.testing import CliRunner

    from cli import app

    for extra in ([], ["--runs", "2"]):
        result = CliRunner().invoke(app, ["train", "--lr", "1e6", "--epochs", "3", *extra])
        assert result.exit_code == 2, result.output
        assert "training diverged at epoch 1" in result.stderr
        assert "times the untrained network's" in result.stderr and "--lr 100000" in result.stderr
        assert "Traceback" not in result.output


def test_divergence_rule():
    from core.training.loop import DIVERGENCE_FACTOR, divergence

    assert divergence(0.5, True, 0.7) is None
    assert divergence(0.7 * DIVERGENCE_FACTOR * 0.99, True, 0.7) is None
    assert "times the untrained" in divergence(0.7 * DIVERGENCE_FACTOR * 1.01, True, 0.7)
    assert divergence(float("nan"), True, 0.7) == "the mean loss is nan"
    assert divergence(float("inf"), True, None) == "the mean loss is inf"
    assert divergence(0.5, False, 0.7) == "a weight is not finite"
    assert divergence(1e30, True, None) is None  # no reference: only non-finite counts


def test_resuming_a_checkpoint_of_the_last_epoch_just_reports_the_run(tmp_path):
    from typer.testing import CliRunner

    from cli import app

    runner = CliRunner()
    model = tmp_path / "m.safetensors"
    first = runner.invoke(app, ["train", "--epochs", "2", "--hidden", "4", "--save", str(model),
                                "--checkpoint-every", "1", "--json"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["train", "--resume", str(tmp_path / "m.ckpt.safetensors"), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["losses"] == json.loads(first.stdout)["losses"]


# -- Ctrl-C ------------------------------------------------------------------------------


@pytest.fixture
def ctrl_c_at_epoch(monkeypatch):
    """Ctrl-C arrives while epoch `n` trains (the callback after it never runs)."""
    from core.files.checkpoint import AfterEpoch

    real = AfterEpoch.__call__

    def arm(n):
        def interrupted(self, index, loss):
            if len(self.losses) + 1 == n:
                raise KeyboardInterrupt
            real(self, index, loss)

        monkeypatch.setattr(AfterEpoch, "__call__", interrupted)

    return arm


def test_ctrl_c_says_where_it_stopped_and_how_to_resume(tmp_path, ctrl_c_at_epoch, monkeypatch):
    ctrl_c_at_epoch(6)
    model = tmp_path / "m.safetensors"
    args = ["train", "--epochs", "8", "--hidden", "6", "--save", model, "--checkpoint-every", "2"]
    result = invoke(*args)
    assert result.exit_code == 130, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("nn-cli: interrupted during epoch 6 of 8"), result.stderr
    checkpoint = tmp_path / "m.ckpt.safetensors"
    assert f"checkpoint of epoch 4 in {checkpoint}" in lines[-1]
    command = f"nn-cli train --resume {checkpoint} --save {model}"
    assert lines[-1].endswith(f"resume with: {command}"), lines[-1]
    assert "Traceback" not in result.output and not model.exists()
    assert read_checkpoint(checkpoint).epoch == 4
    monkeypatch.undo()  # no more Ctrl-C
    resumed = invoke(*command.split()[1:])  # the command it printed works
    assert resumed.exit_code == 0, resumed.output
    assert model.exists()


def test_ctrl_c_without_a_checkpoint_says_so(ctrl_c_at_epoch):
    ctrl_c_at_epoch(2)
    result = invoke("train", "--epochs", "3", "--hidden", "6")
    assert result.exit_code == 130, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("nn-cli: interrupted during epoch 2 of 3"), line
    assert "no checkpoint" in line and "--checkpoint-every" in line


def test_ctrl_c_in_many_runs_says_how_many_finished(ctrl_c_at_epoch):
    ctrl_c_at_epoch(2)  # the first run (one at a time) never gets past its epoch 2
    result = invoke("train", "--epochs", "3", "--hidden", "6", "--runs", "3", "--one-at-a-time")
    assert result.exit_code == 130, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("nn-cli: interrupted"), line
    assert "0 of 3 runs finished" in line


def test_a_real_sigint_stops_with_the_resume_command(tmp_path, one_thread):
    """SIGINT as a terminal's Ctrl-C sends it, to a real process."""
    model, checkpoint = tmp_path / "m.safetensors", tmp_path / "m.ckpt.safetensors"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "train", "--epochs", "100000", "--hidden", "6",
         "--save", str(model), "--checkpoint-every", "1"],
        cwd=tmp_path, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # not ignored
    )
    for line in process.stderr:  # progress: on stderr
        if line.startswith("epoch 2/"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("nn-cli: interrupted during epoch "), err
    assert f"resume with: nn-cli train --resume {checkpoint} --save {model}" in last
    assert read_checkpoint(checkpoint).epoch >= 2
