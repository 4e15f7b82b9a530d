"""The quick part of bench/fault_injection.py: every fourth corrupted model file, checkpoint
and hostile input file, each handled cleanly (the full run, with kills, is in bench/)."""

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import fault_injection  # noqa: E402


@pytest.fixture(scope="module")
def outcomes():
    return fault_injection.run(kills=0, seed=0, quick=True)


def test_the_quick_fault_injection_handles_every_case_cleanly(outcomes):
    failures = [f"{o.group}: {o.name}: {o.why}" for o in outcomes if not o.ok]
    assert failures == []
    groups = {o.group for o in outcomes}
    assert {"model files (predict)", "input files (predict)", "input files (evaluate)"} <= groups


def test_the_judges_fail_what_they_should():
    """A traceback, two lines, or a NaN written are not handled cleanly."""
    assert fault_injection.clean_refusal(1, "", "Traceback ...")
    assert fault_injection.clean_refusal(2, "", "nn-cli: error: a\nnn-cli: error: b\n")
    assert fault_injection.clean_refusal(2, "x", "nn-cli: error: a\n")
    assert not fault_injection.clean_refusal(2, "", "nn-cli: error: bad file\n")
    assert fault_injection.finite_output(0, "score,class\nnan,0\n", "")
    assert not fault_injection.finite_output(0, "score,class\n0.5,1\n", "")


def test_the_model_cases_number_at_least_forty():
    good = (Path(__file__).parent / "test_fault_injection.py").read_bytes()  # any bytes will do
    header = b'{"__metadata__": {"nn_scratch": "{}"}}'
    fake = len(header).to_bytes(8, "little") + header + good
    assert len(fault_injection.model_cases(fake, random.Random(0))) >= 40
    assert len(fault_injection.input_cases()) >= 40
