"""One writer per file, and nothing left beside the file after a clean exit: the lock file
exists only while a run writes, and removing it never lets two runs write at once."""

import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from cli import app
from core.files.atomic import WriteError, lock_file, write_lock


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_a_clean_save_and_predict_leave_nothing_beside_their_files(tmp_path):
    model = tmp_path / "m.safetensors"
    assert invoke("train", "--epochs", "1", "--hidden", "4", "--save", model).exit_code == 0
    rows = tmp_path / "rows.csv"
    rows.write_text("0.1,0.2\n")
    out = tmp_path / "p.csv"
    assert invoke("predict", model, "--input", rows, "--output", out).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors", "p.csv", "rows.csv"]


HOLDER = textwrap.dedent("""
    import sys
    from core.files.atomic import write_lock
    with write_lock(sys.argv[1]):
        print("held", flush=True)
        sys.stdin.readline()  # until the test says so
""")


def test_a_second_process_is_refused_while_the_first_writes(tmp_path):
    target = tmp_path / "m.safetensors"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(WriteError, match="another run is writing it"):
            with write_lock(target):
                pass
        assert lock_file(target).exists()  # while a run writes, its lock is there
    finally:
        holder.communicate("go\n", timeout=30)
    assert holder.returncode == 0 and not lock_file(target).exists()
    with write_lock(target):  # free again
        pass
    assert not lock_file(target).exists()


CONTENDER = textwrap.dedent("""
    import os, sys
    from core.files.atomic import WriteError, write_lock
    target, marker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    won = 0
    for _ in range(rounds):
        try:
            with write_lock(target):
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # fails if another holds it
                os.close(fd)
                os.unlink(marker)
                won += 1
        except WriteError:
            pass
    print(won)
""")


def test_removing_the_lock_file_never_lets_two_processes_hold_it(tmp_path):
    """Four processes take and give back one file's lock as fast as they can; whoever
    holds it creates a marker that must not exist yet. Each release removes the lock
    file, so lockers keep meeting files that vanish under them."""
    target, marker = tmp_path / "m.safetensors", tmp_path / "holder"
    processes = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(target), str(marker), "400"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    results = [p.communicate(timeout=120) for p in processes]
    for p, (out, err) in zip(processes, results):
        assert p.returncode == 0, err  # FileExistsError: two holders at once
    assert sum(int(out) for out, _ in results) > 0
    assert not lock_file(target).exists()
