"""--device: cpu everywhere, cuda where present; a clear error where it is not."""

import dataclasses
import json

import pytest
import torch
from typer.testing import CliRunner

from cli import app
from core import SettingsError, TrainSettings, train
from core.pipeline.ensemble import train_ensemble

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SMALL = TrainSettings(hidden=(8, 8), epochs=2, n_train=200, n_test=100, dtype="float64")


def test_unknown_device_is_refused_naming_the_accepted_ones():
    with pytest.raises(SettingsError, match="device must be one of cpu, cuda, got 'tpu'"):
        TrainSettings(device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_asked_for_and_absent_is_one_line_and_exit_2():
    result = CliRunner().invoke(app, ["train", "--device", "cuda", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        "nn-cli: error: device 'cuda' is not available here (torch finds no CUDA GPU); accepted: cpu"
    )
    assert result.stdout == ""


def test_cpu_device_on_the_command_line_is_the_default_run():
    runner = CliRunner()
    args = ["train", "--json", "--epochs", "2", "--hidden", "8,8"]
    plain = json.loads(runner.invoke(app, args).stdout)
    on_cpu = json.loads(runner.invoke(app, [*args, "--device", "cpu"]).stdout)
    assert on_cpu == plain and on_cpu["settings"]["device"] == "cpu"


@needs_cuda
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("loss", ["mse", "bce"])
def test_cuda_run_matches_the_cpu_run(registry, act, loss):
    settings = dataclasses.replace(SMALL, act=act, loss=loss)
    cpu = train(settings, registry)
    cuda = train(dataclasses.replace(settings, device="cuda"), registry)
    for p, q in zip(cpu.model.parameters(), cuda.model.parameters(), strict=True):
        assert q.value.device.type == "cuda"
        torch.testing.assert_close(q.value.cpu(), p.value, rtol=1e-10, atol=1e-12)


@needs_cuda
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_cuda_ensemble_matches_the_cpu_runs(registry, optimizer):
    settings = dataclasses.replace(SMALL, optimizer=optimizer, lr=0.05)
    alone = [train(dataclasses.replace(settings, seed=s), registry) for s in (0, 1)]
    together = train_ensemble(dataclasses.replace(settings, device="cuda"), [0, 1], registry)
    for a, b in zip(together, alone, strict=True):
        for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
            torch.testing.assert_close(p.value.cpu(), q.value, rtol=1e-10, atol=1e-12)


@needs_cuda
def test_cuda_cnn_with_batchnorm_and_dropout_matches_the_cpu_run(registry):
    settings = TrainSettings(
        data="digits", loss="cross_entropy", dtype="float64", epochs=1, batch_size=64, lr=0.003,
        layers="conv2d:out=4,k=3,pad=1,batchnorm,relu,maxpool2d:k=2,dropout:p=0.2,flatten,"
               "linear:out=10")
    cpu = train(settings, registry)
    cuda = train(dataclasses.replace(settings, device="cuda"), registry)
    for p, q in zip(cpu.model.parameters(), cuda.model.parameters(), strict=True):
        torch.testing.assert_close(q.value.cpu(), p.value, rtol=1e-8, atol=1e-10)
    for name, t in cuda.model.buffers().items():
        torch.testing.assert_close(t.cpu(), cpu.model.buffers()[name], rtol=1e-8, atol=1e-10)
