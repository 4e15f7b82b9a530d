"""Stacks on images: arguments after commas, shapes inferred, impossible stacks named."""

import pytest
import torch

from core import ShapeError, SettingsError, parse_layers
from core.network.assemble import build_layers
from core.network.stack import parse_layer_text

CNN = "conv2d:out=16,k=3,pad=1,relu,maxpool2d:k=2,flatten,linear:out=10"


def test_arguments_after_commas_belong_to_the_component_before():
    assert parse_layer_text(CNN) == [
        ("conv2d", {"out": 16, "k": 3, "pad": 1}), ("relu", {}), ("maxpool2d", {"k": 2}),
        ("flatten", {}), ("linear", {"out": 10}),
    ]
    assert parse_layer_text("linear:out=4:init=he,tanh") == [
        ("linear", {"out": 4, "init": "he"}), ("tanh", {})]
    with pytest.raises(SettingsError, match="must start with a component name"):
        parse_layer_text("k=3,relu")  # nothing before it to belong to
    with pytest.raises(SettingsError, match="gives 'k' twice"):
        parse_layer_text("conv2d:k=3,k=5")


def test_a_key_that_is_a_whole_first_word_wins_over_longer_words(registry):
    (spec,) = parse_layers("conv_transpose2d:out=4,k=2,stride=2", registry)
    assert spec.args == {"out_channels": 4, "kernel_size": 2, "stride": 2}


def shapes(registry, text, in_shape, **options):
    built = build_layers(registry, parse_layers(text, registry), in_shape, init="he",
                         generator=torch.Generator().manual_seed(0), dtype=torch.float64, **options)
    return [shape for _, shape in built]


def test_channels_and_sizes_are_inferred_from_the_input_shape(registry):
    assert shapes(registry, CNN, (1, 8, 8)) == [(16, 8, 8), (16, 8, 8), (16, 4, 4), (256,), (10,)]
    assert shapes(registry, CNN, (1, 8, 8), runs=3)[-1] == (10,)
    course = ("conv2d:out=32,k=2,stride=2,relu,conv2d:out=32,k=2,stride=2,relu,"
              "upsample:scale=2,conv2d:out=32,k=3,pad=1,relu,upsample:scale=2,"
              "conv2d:out=1,k=3,pad=1,sigmoid")
    assert shapes(registry, course, (1, 8, 8))[-1] == (1, 8, 8)
    assert shapes(registry, "linear:out=5,batchnorm,layernorm,linear:out=1", 2)[-1] == (1,)


@pytest.mark.parametrize("text, fragments", [
    ("conv2d:out=4,k=3,maxpool2d:k=2,conv2d:out=4,k=5", ["item 3 (conv2d)", "input 4x3x3",
                                                        "does not fit a 3x3 input"]),
    ("flatten,maxpool2d:k=2", ["item 2 (maxpool2d)", "input 64", "cannot follow flatten"]),
    ("linear:out=3", ["item 1 (linear)", "input 1x8x8"]),
    ("conv2d:out=4,k=3,pad=-1", ["item 1 (conv2d)", "padding must be an integer >= 0"]),
])
def test_an_impossible_stack_is_one_line_naming_the_layer_and_the_shapes(registry, text, fragments):
    with pytest.raises(ShapeError) as info:
        shapes(registry, text, (1, 8, 8))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_a_small_network_is_probed_on_the_cpu_and_a_large_one_on_meta():
    """shapes_only builds a network of up to SMALL_PROBE_BYTES of weights on the CPU (zero
    weights: a first meta op costs seconds) and a larger one on the meta device."""
    from core import default_registry
    from core.network.assemble import SMALL_PROBE_BYTES, mlp_specs, probe_device, shapes_only

    registry = default_registry()
    small = shapes_only(registry, mlp_specs((25, 25, 25), 1, "tanh"), 2, torch.float32)
    assert probe_device(small).type == "cpu"
    assert all(torch.count_nonzero(p.value) == 0 for p in small.parameters())
    wide = int((SMALL_PROBE_BYTES / 4) ** 0.5) + 1  # one wide x wide float32 weight: too big
    large = shapes_only(registry, mlp_specs((wide,), 1, "tanh"), wide, torch.float32)
    assert probe_device(large).type == "meta"
    for model, width in ((small, 2), (large, wide)):
        x = torch.zeros(1, width, device=probe_device(model))
        assert model.forward(x).shape == (1, 1)


def test_checking_the_default_run_does_not_touch_the_meta_device():
    """The check before training (names, memory, shapes) of the default network stays off the
    meta device, whose first op loads torch._dynamo (about 2 s of every run's start-up)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from core import default_registry, TrainSettings; "
            "from core.pipeline.prepare import check; "
            "check(TrainSettings(), default_registry()); print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "NN_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
