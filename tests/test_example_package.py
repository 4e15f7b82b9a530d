"""The example third-party package under examples/ works from a checkout, without installing.

CI (.ci/run) also installs it into a clean environment and trains with it.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app

PACKAGE = Path(__file__).resolve().parent.parent / "examples" / "nn-scratch-extras"


@pytest.fixture
def extras(monkeypatch):
    monkeypatch.syspath_prepend(str(PACKAGE))
    monkeypatch.setenv("NN_DISABLE_PLUGIN_AUTOLOAD", "1")  # only what -p names


def test_example_components_pass_the_kit(extras):
    from nn_testing import check_module
    from nn_scratch_extras import PReLU, Swish

    check_module(PReLU, alpha=0.1)
    check_module(Swish, beta=2.0)


def test_example_trains_with_its_activation_and_in_a_stack(extras):
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["-p", "nn_scratch_extras", "list", "--json"]).stdout)
    assert {(r["name"], r["plugin"]) for r in listed} >= {("prelu", "nn_scratch_extras"),
                                                          ("swish", "nn_scratch_extras")}
    for args in (["--act", "swish", "--hidden", "8"], ["--layers", "linear:out=8,prelu:alpha=0.1,linear:out=1"]):
        result = runner.invoke(app, ["-p", "nn_scratch_extras", "train", "--epochs", "1",
                                     "--json", *args])
        assert result.exit_code == 0, result.output
        assert 0 <= json.loads(result.stdout)["test_error"] <= 1
