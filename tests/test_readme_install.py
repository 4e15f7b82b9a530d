"""What the README promises about setting up, held to the files that keep the promise."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TRAIN = ("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e . && "
         ".venv/bin/nn-cli train --act tanh --loss mse")
TEST = ("python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e '.[test]' && "
        ".venv/bin/python -m pytest")


def shell_lines(text: str) -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_the_two_set_up_commands_stay_verbatim_and_ci_runs_the_second():
    assert TRAIN in shell_lines(README) and TEST in shell_lines(README)
    assert TEST in CI


def test_the_readme_no_longer_claims_that_argument_order_picks_the_cpu_build():
    flat = " ".join(README.split())
    assert "named first" not in flat
    assert "so a CPU-only machine takes the CPU build" not in flat
    assert "order" in flat and "does not choose" in flat  # says what is true instead


def test_a_stock_machine_gets_a_labelled_way_to_the_cpu_build():
    lines = [line for line in shell_lines(README) if CPU_INDEX in line]
    assert lines, "no shell line installs torch from PyTorch's CPU index"
    assert any(f"torch==2.13.0 --index-url {CPU_INDEX}" in line for line in lines)
    at = README.index(CPU_INDEX)
    assert "stock" in README[max(0, at - 600):at].lower()  # labelled for stock machines
    assert CPU_INDEX not in CI  # this machine reaches only PyPI


def test_pyproject_does_not_repeat_the_false_claim():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "the README's command does" not in pyproject
