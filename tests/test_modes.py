"""Training and evaluation modes, and non-trainable state, through the whole run.

On the disk task a stack with batchnorm and dropout exercises every path: the loop
switches modes, the errors are measured in evaluation, running statistics travel through
model files, checkpoints and the ensemble, and dropout's masks come from the run's seed.
"""

import torch

from core import TrainSettings, load_model, read_checkpoint, save_model, train, train_ensemble
from core.files.checkpoint import Checkpointing
from core.pipeline.prepare import prepare
from core.pipeline.resolve import resolve
from core.network.sequential import Sequential
from core.training.evaluate import error_rate
from core.training.loop import fit

LAYERS = "linear:out=12,batchnorm,relu,dropout:p=0.25,linear:out=8,layernorm,gelu,linear:out=1"
SETTINGS = TrainSettings(layers=LAYERS, epochs=4, n_train=120, n_test=60, batch_size=32,
                         dtype="float64", lr=0.01)


def state(model):
    return [p.value.clone() for p in model.parameters()] + [
        t.clone() for t in model.buffers().values()]


def assert_same(a, b, **tolerance):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if tolerance:
            torch.testing.assert_close(x, y, **tolerance)
        else:
            assert torch.equal(x, y)


def test_a_seed_gives_the_same_dropout_run_bit_for_bit_and_another_seed_does_not():
    first, again = train(SETTINGS), train(SETTINGS)
    assert first.losses == again.losses
    assert_same(state(first.model), state(again.model))
    other = train(TrainSettings(**{**SETTINGS.__dict__, "seed": 1}))
    assert other.losses != first.losses


def test_batchnorm_model_saved_and_loaded_predicts_as_before(tmp_path):
    result = train(SETTINGS)
    running_mean = result.model.buffers()["1.running_mean"]
    assert running_mean.abs().sum() > 0  # the statistics moved while training
    x = prepare(resolve(SETTINGS)).data.x_test
    result.model.eval()
    before = result.model.forward(x)
    loaded = load_model(save_model(tmp_path / "m.safetensors", result))
    assert not loaded.model.training
    assert torch.equal(loaded.model.buffers()["1.running_mean"], running_mean)
    assert torch.equal(loaded.model.forward(x), before)
    assert torch.equal(loaded.model.forward(x), before)  # evaluation: nothing moves, nothing drawn


def test_resume_with_dropout_and_batchnorm_ends_as_the_uninterrupted_run(tmp_path):
    whole = train(SETTINGS)
    stopped = tmp_path / "stopped.ckpt.safetensors"

    class Stop(Exception):
        pass

    def stop_after_two(epoch, loss):
        if epoch == 2:
            raise Stop

    try:
        train(SETTINGS, on_epoch=stop_after_two, checkpoint=Checkpointing(stopped, every=1))
    except Stop:
        pass
    checkpoint = read_checkpoint(stopped)
    assert checkpoint.epoch == 2 and "rng.init" in checkpoint.file.tensors
    resumed = train(SETTINGS, resume=checkpoint)
    assert resumed.losses == whole.losses
    assert_same(state(resumed.model), state(whole.model))


def test_the_ensemble_gives_each_seed_its_dropout_masks_and_running_statistics():
    seeds = [0, 3]
    together = train_ensemble(SETTINGS, seeds)
    for seed, result in zip(seeds, together):
        alone = train(TrainSettings(**{**SETTINGS.__dict__, "seed": seed}))
        torch.testing.assert_close(torch.tensor(result.losses), torch.tensor(alone.losses),
                                   rtol=1e-11, atol=0)
        # atol: the bias before batchnorm has a zero gradient in exact arithmetic, so it is rounding noise
        assert_same(state(result.model), state(alone.model), rtol=1e-9, atol=1e-9)


class ModeSpy:
    """Records the mode of each forward."""

    def __init__(self):
        self.training, self.seen = True, []

    def train(self, mode=True):
        self.training = mode

    def forward(self, x):
        self.seen.append(self.training)
        return x

    def backward(self, g):
        return g

    def parameters(self):
        return []


class Plain:
    """A module without modes: it keeps working untouched."""

    def forward(self, x):
        return x.sum(dim=-1, keepdim=True)

    def backward(self, g):
        return g.expand(-1, 2)

    def parameters(self):
        return []


def test_the_loop_trains_in_training_mode_and_measures_errors_in_evaluation(registry):
    spy = ModeSpy()
    model = Sequential(registry.create("layer", "linear", in_features=2, out_features=2,
                                       init=registry.create("initializer", "he"),
                                       generator=torch.Generator().manual_seed(0)), spy, Plain())
    x, y = torch.randn(10, 2), (torch.rand(10, 1) > 0.5).float()
    loss = registry.create("loss", "bce")
    optimizer = registry.create("optimizer", "sgd", parameters=model.parameters(), lr=0.1)
    spy.train(False)
    fit(model, loss, optimizer, x, y, epochs=2, batch_size=5, generator=torch.Generator())
    assert spy.seen == [True] * 4
    error_rate(model, loss, x, y)
    assert spy.seen[-1] is False and spy.training is True  # back to the mode it was in
