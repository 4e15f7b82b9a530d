"""Sweeps and data-parallel training on real process groups: 2 processes, gloo, 127.0.0.1.

One group of two processes (tests/distributed_cases.py) runs every in-process case once;
the tests below compare what it gave with one process. The CLI tests start torchrun, with
its rendezvous on 127.0.0.1, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import distributed_cases as cases
from cli import app
from core.pipeline.compare import compare
from core.pipeline.sharing import share
from core.training.distributed import launch_command, part
from core.pipeline.train import train
from core.files.model_file import load_model
from core.pipeline.multirun import run_many

ROOT = Path(__file__).resolve().parent.parent
CLI = str(ROOT / "cli.py")
LOOPBACK = "127.0.0.1"


def loopback_env(**extra: str) -> dict[str, str]:
    from core.training.distributed import loopback_interface

    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RESTART_COUNT")}
    env |= {"MASTER_ADDR": LOOPBACK, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
            "NN_DISABLE_PLUGIN_AUTOLOAD": "1", **extra}
    if loopback_interface() is not None:
        env["GLOO_SOCKET_IFNAME"] = loopback_interface()
    return env


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The one-process references train on one thread, as nn-cli does: fast on 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """Both ranks' findings from one 2-process group running every case.

    This process hosts the group's store on 127.0.0.1 (as torchrun's launcher would), so
    the workers only connect to it; their gloo sockets listen on the loopback interface.
    """
    from core.training.torchrun import LoopbackTCPStore

    out = tmp_path_factory.mktemp("group")
    store = LoopbackTCPStore(LOOPBACK, 0, 2, True, wait_for_workers=False)
    env = loopback_env(WORLD_SIZE="2", MASTER_PORT=str(store.port),
                       TORCHELASTIC_USE_AGENT_STORE="True")
    procs = [subprocess.Popen([sys.executable, str(Path(cases.__file__)), str(out)],
                              env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(2)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


# --- pure pieces ---------------------------------------------------------------------------

def test_share_gives_each_rank_a_consecutive_block_and_together_everything():
    for n in range(0, 13):
        for size in (1, 2, 3, 5):
            blocks = [share(list(range(n)), _World(r, size)) for r in range(size)]
            assert sum(blocks, []) == list(range(n))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_part_splits_a_batch_into_slices_that_cover_it():
    for start, stop in ((0, 30), (90, 100), (5, 6)):
        slices = [part(start, stop, _World(r, 2)) for r in range(2)]
        assert slices[0][0] == start and slices[-1][1] == stop
        assert slices[0][1] == slices[1][0]


def test_launch_binds_its_rendezvous_to_loopback_and_refuses_zero_workers():
    command = launch_command(2, ["cli.py", "train"])
    assert command[command.index("--rdzv-endpoint") + 1] == "127.0.0.1:0"
    assert command[-2:] == ["cli.py", "train"]
    with pytest.raises(Exception, match="workers must be an integer >= 1, got 0"):
        launch_command(0, ["cli.py"])


def test_one_process_has_no_world(monkeypatch):
    from core.training.distributed import World

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert World.from_env() is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_nccl_without_a_gpu_is_a_clear_error(monkeypatch):
    from core.training.distributed import World
    from core.errors import SettingsError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SettingsError, match="device 'cuda' is not available"):
        World.from_env("cuda")


class _World:
    def __init__(self, rank, size):
        self.rank, self.size = rank, size


def test_the_distributed_modules_keep_no_state_in_module_globals():
    """State lives in objects passed explicitly (a World and its Rendezvous, LocalWorkers):
    no `global` statement, and nothing at module level but constants, imports and defs."""
    import ast

    modules = ["core/training/world.py", "core/training/rendezvous.py",
               "core/training/data_parallel.py", "core/training/launch.py",
               "core/training/distributed.py", "core/pipeline/sharing.py"]
    for path in modules:
        tree = ast.parse((ROOT / path).read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], path
        for node in tree.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
                assert all(n.isupper() or n in ("T", "__all__") for n in names), (path, names)


# --- data parallel ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(cases.DATA_PARALLEL))
def test_data_parallel_equals_one_process_on_the_same_global_batches(group, name):
    """K = 2 in float64 against one process: the same weights and losses to 1e-10."""
    alone = train(cases.DATA_PARALLEL[name], cases.registry())
    expected = [p.value for p in alone.model.parameters()]
    for rank in group:
        found = rank[name]
        assert len(found["weights"]) == len(expected)
        for got, want in zip(found["weights"], expected):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
        assert found["losses"] == pytest.approx(alone.losses, rel=1e-10, abs=1e-12)
        assert found["errors"] == (alone.train_error, alone.test_error)
    # and training did move the weights: the comparison is not between two untouched nets
    untouched = train(replace(cases.DATA_PARALLEL[name], epochs=1, lr=1e-12), cases.registry())
    assert not torch.equal(untouched.model.parameters()[0].value, expected[0])


def test_batchnorm_under_data_parallel_normalises_with_each_ranks_own_batch_statistics(group):
    """As DistributedDataParallel without SyncBatchNorm: each rank normalises its slice of
    the global batch by the slice's own mean and variance. The gradients are still summed,
    so the weights stay the same on every rank, but they are not one process's weights
    (which normalises the whole batch), and the running statistics differ between ranks.
    One step of one full batch (40 = 20 + 20) on raw inputs: the first batchnorm's running
    mean is momentum x its slice's mean, so the ranks' average is one process's."""
    alone = train(cases.BATCHNORM, cases.registry())
    ranks = [rank["batchnorm"] for rank in group]
    for a, b in zip(ranks[0]["weights"], ranks[1]["weights"], strict=True):
        assert torch.equal(a, b)  # the all_reduce keeps the ranks in step
    theirs = [p.value for p in alone.model.parameters()]
    assert max((a - b).abs().max().item() for a, b in zip(ranks[0]["weights"], theirs)) > 1e-6
    means = [rank["buffers"]["0.running_mean"] for rank in ranks]  # (2,) for the 2 inputs
    assert not torch.allclose(means[0], means[1])
    torch.testing.assert_close((means[0] + means[1]) / 2, alone.model.buffers()["0.running_mean"],
                               rtol=1e-12, atol=1e-12)


def test_ranks_started_differently_are_refused_on_every_rank(group):
    for rank in group:
        name, message = rank["settings_differ"]
        assert name == "DistributedError"
        assert "the run's settings differs between ranks" in message


# --- sweeps -----------------------------------------------------------------------------------

def test_claims_hand_each_index_to_exactly_one_rank_call_after_call(group):
    for call, count in enumerate(cases.CLAIMS):
        taken = [rank["claims"][call] for rank in group]
        assert sorted(taken[0] + taken[1]) == list(range(count))
        assert all(sorted(mine) == mine for mine in taken)  # a rank takes them in order


def test_sweep_groups_are_whole_configurations_when_there_are_enough():
    from core.pipeline.multirun import groups

    configs = [replace(cases.SWEEP_BASE, act=a) for a in ("tanh", "relu", "sigmoid")]
    assert groups(configs, 4, 2) == [(c, 0, [7, 8, 9, 10]) for c in range(3)]
    # fewer configurations than ranks: consecutive shares, one group per configuration in
    # each, the largest first
    assert groups(configs[:1], 5, 2) == [(0, 2, [9, 10, 11]), (0, 0, [7, 8])]
    assert groups(configs[:2], 3, 3) == [(0, 0, [7, 8]), (1, 1, [8, 9]), (0, 2, [9]), (1, 0, [7])]


def test_sweep_one_at_a_time_equals_one_process_bit_for_bit(group):
    alone = compare(cases.SWEEP_BASE, cases.SWEEP_VARIATIONS, cases.SWEEP_RUNS,
                    cases.registry(), together=False)
    assert group[0]["sweep_together_False"] == alone.to_dict()
    assert group[1]["sweep_together_False"] is None  # rank 0 alone gets the results


def test_sweep_as_ensembles_equals_one_process(group):
    alone = compare(cases.SWEEP_BASE, cases.SWEEP_VARIATIONS, cases.SWEEP_RUNS,
                    cases.registry()).to_dict()
    found = group[0]["sweep_together_True"]
    assert found["varied"] == alone["varied"]
    for got, want in zip(found["configurations"], alone["configurations"], strict=True):
        assert [r["seed"] for r in got["runs"]] == [r["seed"] for r in want["runs"]]
    # each configuration trained as one whole ensemble, as in one process: the same bits
    assert found == alone


def test_runs_split_across_ranks_agree_with_one_process_in_float64(group):
    alone = run_many(replace(cases.SWEEP_BASE, dtype="float64"), 5, cases.registry()).to_dict()
    found = group[0]["runs_float64"]
    assert [r["seed"] for r in found["runs"]] == [7, 8, 9, 10, 11]
    for a, b in zip(found["runs"], alone["runs"], strict=True):
        assert a["losses"] == pytest.approx(b["losses"], rel=1e-11)
        assert (a["train_error"], a["test_error"]) == (b["train_error"], b["test_error"])
    assert group[1]["runs_float64"] is None


def test_a_failure_on_one_rank_stops_every_rank_with_the_same_message(group):
    assert group[0]["diverges"] == group[1]["diverges"]
    name, message = group[0]["diverges"]
    assert name == "DivergenceError" and "training diverged" in message


# --- the command line under torchrun ------------------------------------------------------

FAST = ["--epochs", "2", "--hidden", "6"]


def nn_cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, CLI, *args], env=loopback_env(), capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_compare_with_two_workers_prints_what_one_process_prints(tmp_path, monkeypatch):
    args = ["compare", "--act", "tanh", "--act", "relu", "--runs", "3", "--one-at-a-time",
            "--json", *FAST]
    two = nn_cli(*args, "--workers", "2", "--csv", str(tmp_path / "two.csv"))
    assert two.returncode == 0, two.stderr
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    one = CliRunner().invoke(app, [*args, "--csv", str(tmp_path / "one.csv")])
    assert json.loads(two.stdout) == json.loads(one.stdout)
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()


def test_workers_start_the_same_command_with_every_given_option(monkeypatch):
    started = []

    class Recorded:
        def __init__(self, workers, script):
            started.append((workers, script))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    monkeypatch.setattr("core.training.distributed.LocalWorkers", Recorded)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = CliRunner().invoke(app, ["train", "--act", "relu", "--runs", "2", "--json",
                                      "--workers", "3", "--epochs", "1", "--hidden", "4"])
    assert result.exit_code == 0, result.output
    (workers, script), = started
    assert workers == 3 and script[0] == CLI
    assert script[1:] == ["train", "--act", "relu", "--hidden", "4", "--epochs", "1",
                          "--runs", "2", "--json"]


def test_bad_workers_is_one_line_and_status_2():
    result = CliRunner().invoke(app, ["compare", "--workers", "0", *FAST])
    assert result.exit_code == 2
    assert result.stderr.strip() == "nn-cli: error: workers must be an integer >= 1, got 0"


def _float64_run(tmp_path: Path, name: str) -> list[str]:
    # lr 0.01: with Adam at 0.04 and small batches, float64 rounding grows over the epochs
    return ["train", "--dtype", "float64", "--epochs", "30", "--batch-size", "100",
            "--lr", "0.01", "--seed", "2", "--save", str(tmp_path / f"{name}.safetensors"),
            "--json"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """An uninterrupted 2-process data-parallel run through the CLI, and its result."""
    tmp = tmp_path_factory.mktemp("dp")
    done = nn_cli(*_float64_run(tmp, "two"), "--workers", "2")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), load_model(tmp / "two.safetensors")


def test_cli_data_parallel_equals_one_process(uninterrupted):
    data, model = uninterrupted
    alone = train(replace(model.settings), None)
    assert data["losses"] == pytest.approx(alone.losses, rel=1e-10)
    for got, want in zip(model.model.parameters(), alone.model.parameters()):
        torch.testing.assert_close(got.value, want.value, rtol=1e-10, atol=1e-10)


def test_resume_under_two_workers_equals_resuming_in_one_process(tmp_path, monkeypatch):
    """A checkpoint written by one process after 2 of 4 epochs, resumed data parallel."""
    from core.files.checkpoint import Checkpointing
    from core.training.settings import TrainSettings

    checkpoint = tmp_path / "half.ckpt.safetensors"

    def stop_after_two(epoch, _loss):
        if epoch == 2:
            raise KeyboardInterrupt  # the checkpoint of epoch 2 is on disk by now

    settings = TrainSettings(dtype="float64", epochs=4, lr=0.01, batch_size=100)
    with pytest.raises(KeyboardInterrupt):
        train(settings, None, stop_after_two, checkpoint=Checkpointing(checkpoint, every=1))
    two = nn_cli("train", "--resume", str(checkpoint), "--checkpoint-every", "0", "--json",
                 "--workers", "2")
    assert two.returncode == 0, two.stderr
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    one = CliRunner().invoke(app, ["train", "--resume", str(checkpoint), "--checkpoint-every",
                                   "0", "--json"])
    assert one.exit_code == 0, one.output
    got, want = json.loads(two.stdout)["losses"], json.loads(one.stdout)["losses"]
    assert len(got) == 4 and got[:2] == want[:2]  # the first two come from the checkpoint
    assert got == pytest.approx(want, rel=1e-10)


def test_killed_worker_restarts_from_the_checkpoint_to_the_same_weights(tmp_path, uninterrupted):
    """torchrun --max-restarts 1: SIGKILL rank 1 once a checkpoint exists; the restarted group
    resumes from it and ends with the uninterrupted run's weights, bit for bit."""
    checkpoint = tmp_path / "run.ckpt.safetensors"
    command = launch_command(2, [CLI, *_float64_run(tmp_path, "killed"),
                                 "--checkpoint", str(checkpoint), "--checkpoint-every", "1"])
    command[command.index("--max-restarts") + 1] = "1"
    launcher = subprocess.Popen(command, env=loopback_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists():
            assert launcher.poll() is None and time.monotonic() < deadline, "no checkpoint came"
            time.sleep(0.02)
        os.kill(_worker_pid(launcher.pid, rank=1), signal.SIGKILL)
        stdout, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:  # stop the launcher: it stops its workers
            launcher.terminate()
            print(launcher.communicate(timeout=60)[1])
    assert launcher.returncode == 0, stderr
    assert "torchrun restarted the workers: going on from" in stderr
    data, model = uninterrupted
    assert json.loads(stdout)["losses"] == data["losses"]
    killed = load_model(tmp_path / "killed.safetensors")
    for got, want in zip(killed.model.parameters(), model.model.parameters()):
        assert torch.equal(got.value, want.value)


def _worker_pid(launcher: int, rank: int) -> int:
    """The pid of the worker of `rank` among the launcher's children (from /proc)."""
    for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"no worker of rank {rank} under pid {launcher}")


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallel needs 2 GPUs")
def test_nccl_data_parallel_equals_one_process(tmp_path):
    args = ["train", "--device", "cuda", "--dtype", "float64", "--epochs", "3", "--json"]
    two = nn_cli(*args, "--workers", "2")
    assert two.returncode == 0, two.stderr
    one = nn_cli(*args)
    assert json.loads(two.stdout)["losses"] == pytest.approx(json.loads(one.stdout)["losses"],
                                                             rel=1e-10)


CLAIMS_OVER_ENV = """
import sys
from core.pipeline.sharing import claims
from core.training.distributed import World
world = World.from_env(join=False)
taken = list(claims(world, 7))  # joins first: under env:// the store comes with the group
world.join()
import torch.distributed as dist
found = [None, None]
dist.all_gather_object(found, taken)
print(sorted(found[0] + found[1]) == list(range(7)))
"""


def test_claims_work_where_the_group_brings_its_own_store():
    """Started with MASTER_ADDR/MASTER_PORT alone (no launcher's store): env://."""
    import socket

    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]
    env = loopback_env(WORLD_SIZE="2", MASTER_PORT=str(port))
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMS_OVER_ENV], cwd=ROOT, text=True,
                              env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for r in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [o.strip().splitlines()[-1] for o in outputs] == ["True", "True"], outputs
