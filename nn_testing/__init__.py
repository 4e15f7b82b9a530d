"""The authoring kit: named checks a plugin author runs from their own pytest suite.

    from nn_testing import check_module, check_loss, check_initializer, check_dataset

    def test_my_layer():
        check_module(MyLayer, alpha=0.2)        # a factory and its arguments
        check_module("my_layer")                # or a registered name

Each `check_*` runs every named check of its kind, each on its own, then raises
`CheckFailed` (an AssertionError) listing every check that failed, by name and by how much
it missed; `failures` holds them. The `*_checks` functions return the checks themselves, for
one test case per check (as scikit-learn's `parametrize_with_checks`):

    @pytest.mark.parametrize("check", module_checks(MyLayer, alpha=0.2), ids=str)
    def test_my_layer(check):
        check()

A module's checks (modules.py) build it in float64 and compare its hand-written backward
with torch.autograd run over its own forward, on random inputs of several batch sizes, at
the parameters' initial values and again at random ones (a backward that forgets a gain
initialised to 1 fails); then that parameter gradients accumulate until `zero_grad`, that
parameters and their gradients have matching shapes, and that a seed gives the same
component twice. A component that declares `supports_runs = True` is checked on the runs
path too: a leading run dimension on every parameter and the input, and each run computing
what the single component computes with that run's parameters. Losses (losses.py),
initializers (initializers.py) and datasets (datasets.py) have checks of their own;
checks.py holds what they share (running, reporting, comparing).

NOTE: this package is test tooling, not framework code: it uses torch.autograd as the
oracle, so it lives outside core/ and plugins/, and no framework file may import it
(tests/test_from_scratch.py enforces that).
"""

from nn_testing.checks import (
    TOLERANCE,
    Check,
    CheckFailed,
    CheckResult,
    check_all,
    raise_failures,
    run_checks,
)
from nn_testing.datasets import check_dataset, dataset_checks
from nn_testing.initializers import check_initializer, initializer_checks
from nn_testing.losses import check_loss, loss_checks
from nn_testing.modules import BATCH_SIZES, RUNS, check_module, module_checks

__all__ = [
    "BATCH_SIZES", "RUNS", "TOLERANCE", "Check", "CheckFailed", "CheckResult", "check_all",
    "check_dataset", "check_initializer", "check_loss", "check_module", "dataset_checks",
    "initializer_checks", "loss_checks", "module_checks", "raise_failures", "run_checks",
]
