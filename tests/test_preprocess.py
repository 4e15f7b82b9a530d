"""Input standardisation: fitted on the training inputs only, replayed by `apply`."""

import pytest
import torch

from core import SettingsError, TrainSettings, train
from core.pipeline.prepare import datasets
from core.data.preprocess import IDENTITY, apply, fit_standardize


def test_fit_gives_the_training_inputs_mean_and_population_std(gen):
    x = torch.rand(500, 2, generator=gen, dtype=torch.float64) * torch.tensor([2.0, 0.5]) + 3
    p = fit_standardize(x)
    stats = p["standardize"]
    torch.testing.assert_close(torch.tensor(stats["mean"], dtype=torch.float64), x.mean(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.tensor(stats["std"], dtype=torch.float64), x.std(0, correction=0), rtol=1e-12, atol=0)
    z = apply(p, x)
    torch.testing.assert_close(z.mean(0), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(z.std(0, correction=0), torch.ones(2, dtype=torch.float64), rtol=1e-12, atol=0)


def test_apply_is_the_same_affine_map_for_any_inputs(gen):
    p = {"standardize": {"mean": [0.5, 0.25], "std": [2.0, 0.5]}}
    x = torch.tensor([[0.5, 0.25], [2.5, 0.75]], dtype=torch.float64)
    assert apply(p, x).tolist() == [[0.0, 0.0], [1.0, 1.0]]
    assert apply(p, x.float()).dtype == torch.float32
    assert apply(IDENTITY, x) is x


def test_a_constant_feature_is_centred_not_divided_by_zero():
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0]], dtype=torch.float64)
    p = fit_standardize(x)
    assert p["standardize"]["std"][1] == 1.0 and apply(p, x)[:, 1].tolist() == [0.0, 0.0]


def test_bad_preprocessing_dicts_are_refused():
    x = torch.zeros(3, 2)
    with pytest.raises(SettingsError, match="'whiten'; accepted: standardize"):
        apply({"whiten": {}}, x)
    with pytest.raises(SettingsError, match="3 features"):
        apply({"standardize": {"mean": [0, 0, 0], "std": [1, 1, 1]}}, x)


def test_train_fits_on_the_training_inputs_and_records_the_statistics(registry):
    settings = TrainSettings(hidden=(4,), epochs=1, n_train=100, n_test=300, seed=2)
    result = train(settings, registry)
    x_train, _, x_test, _ = datasets(settings)
    assert result.preprocessing == fit_standardize(x_train)
    assert result.preprocessing != fit_standardize(x_test)  # the test inputs are never used
    assert result.to_dict()["preprocessing"] == result.preprocessing


def test_without_preprocessing_the_result_holds_no_step(registry):
    result = train(TrainSettings(hidden=(4,), epochs=1, n_train=50, n_test=50,
                                 preprocess="none"), registry)
    assert result.preprocessing == {}


def test_unknown_preprocess_setting_is_refused():
    with pytest.raises(SettingsError, match="standardize, none"):
        TrainSettings(preprocess="pca")
