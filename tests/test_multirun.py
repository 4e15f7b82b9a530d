"""Many runs: each is the single run of its seed; the statistics are right."""

import statistics
from dataclasses import replace

import pytest

from core import SettingsError, TrainSettings, train
from core.pipeline.multirun import run_many, std

SMALL = TrainSettings(hidden=(6,), epochs=3, n_train=200, n_test=200, seed=7)


@pytest.fixture(scope="module")
def many(registry):
    return run_many(SMALL, 3, registry)


def test_run_i_is_the_single_run_of_seed_plus_i(registry):
    # The runs train together as a batched ensemble, whose batched matmuls may add in
    # another order than the single run's: float64 makes that difference ~1e-15.
    settings = replace(SMALL, dtype="float64")
    many = run_many(settings, 3, registry)
    assert many.seeds == [7, 8, 9]
    for i, result in enumerate(many.results):
        alone = train(replace(settings, seed=settings.seed + i), registry)
        assert result.settings == alone.settings
        assert (result.train_error, result.test_error) == (alone.train_error, alone.test_error)
        assert result.losses == pytest.approx(alone.losses, rel=1e-11)
        assert result.preprocessing == alone.preprocessing


def test_runs_differ_from_each_other(many):
    assert len({tuple(r.losses) for r in many.results}) == 3


def test_statistics_are_means_and_sample_stds(many):
    d = many.to_dict()
    tests = [r.test_error for r in many.results]
    trains = [r.train_error for r in many.results]
    assert d["test_error_mean"] == pytest.approx(sum(tests) / 3, rel=1e-12)
    assert d["test_error_std"] == pytest.approx(statistics.stdev(tests), rel=1e-12)
    assert d["train_error_mean"] == pytest.approx(sum(trains) / 3, rel=1e-12)
    assert d["train_error_std"] == pytest.approx(statistics.stdev(trains), rel=1e-12)
    for epoch in range(SMALL.epochs):
        column = [r.losses[epoch] for r in many.results]
        assert d["loss_mean"][epoch] == pytest.approx(sum(column) / 3, rel=1e-12)
        assert d["loss_std"][epoch] == pytest.approx(statistics.stdev(column), rel=1e-12)
    assert [run["seed"] for run in d["runs"]] == [7, 8, 9]
    assert d["runs"][1]["losses"] == many.results[1].losses
    assert d["settings"] == SMALL.to_dict()


def test_std_of_one_value_is_zero_and_of_two_is_sample():
    assert std([0.3]) == 0.0
    assert std([1.0, 3.0]) == pytest.approx(2**0.5)  # population std would be 1.0


@pytest.mark.parametrize("runs", [0, -1, 1.5, True])
def test_bad_run_counts_are_refused(runs, registry):
    with pytest.raises(SettingsError, match="runs"):
        run_many(SMALL, runs, registry)
