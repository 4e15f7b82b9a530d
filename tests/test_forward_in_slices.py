"""Evaluation forwards large data in slices of rows (core.training.evaluate.forward_in_slices)."""

import torch

from core import default_registry, evaluating
from core.network.assemble import build_flat_stack
from core.pipeline.resolve import generator, resolve
from core.training import evaluate
from core.training.settings import TrainSettings

CNN = "conv2d:out=4,k=3,pad=1,batchnorm,relu,maxpool2d:k=2,flatten,dropout:p=0.5,linear:out=3"


class Recorder:
    """A module that records the batch sizes it is given."""

    def __init__(self):
        self.rows = []

    def forward(self, x):
        self.rows.append(x.shape[-2])
        return x[..., :1] * 2


def test_small_data_is_one_forward_and_large_data_equal_slices_of_64_rows_or_more():
    small = Recorder()
    evaluate.forward_in_slices(small, torch.zeros(30, 1000, 2))  # 30 runs of the disk
    assert small.rows == [1000]
    large = Recorder()
    out = evaluate.forward_in_slices(large, torch.arange(30 * 1347 * 64.0).view(30, 1347, 64))
    assert sum(large.rows) == 1347 and len(large.rows) > 1
    assert min(large.rows) >= 64 and max(large.rows) - min(large.rows) <= len(large.rows)
    torch.testing.assert_close(out, torch.arange(30 * 1347 * 64.0).view(30, 1347, 64)[..., :1] * 2)


def test_slices_give_a_cnn_ensemble_the_outputs_of_the_whole_in_evaluation(monkeypatch):
    registry = default_registry()
    settings = TrainSettings(data="digits", layers=CNN, loss="cross_entropy", dtype="float64")
    specs = resolve(settings, registry).network_specs(3)
    ensemble = build_flat_stack(registry, specs, (1, 8, 8), init="he",
                                generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                                device="cpu", runs=3)
    x = torch.randn(3, 500, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with evaluating(ensemble):
        whole = ensemble.forward(x)
        monkeypatch.setattr(evaluate, "SLICE_NUMBERS", 1)  # slices of 64 rows
        sliced = evaluate.forward_in_slices(ensemble, x)
    torch.testing.assert_close(sliced, whole, rtol=1e-12, atol=1e-12)
    single = build_flat_stack(registry, specs, (1, 8, 8), init=settings.init,
                              generator=generator(settings, "init"), dtype=torch.float64, device="cpu")
    single.train(False)
    torch.testing.assert_close(evaluate.forward_in_slices(single, x[0]), single.forward(x[0]),
                               rtol=1e-12, atol=1e-12)
