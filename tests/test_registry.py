import types

import pytest
import torch

from core import RegistrationError, Registry, UnknownComponentError, hookimpl
from core.plugin.registry import KINDS, builtin_manifest, read_manifest


def test_builtin_components_are_registered_by_their_plugin_modules(registry):
    expected = {
        ("layer", "linear"): "plugins.linear",
        ("activation", "relu"): "plugins.activations",
        ("activation", "tanh"): "plugins.activations",
        ("activation", "sigmoid"): "plugins.activations",
        ("activation", "leaky_relu"): "plugins.activations",
        ("activation", "gelu"): "plugins.activations",
        ("layer", "conv2d"): "plugins.conv",
        ("layer", "conv_transpose2d"): "plugins.conv",
        ("layer", "maxpool2d"): "plugins.pooling",
        ("layer", "avgpool2d"): "plugins.pooling",
        ("layer", "upsample"): "plugins.pooling",
        ("layer", "flatten"): "plugins.pooling",
        ("layer", "batchnorm"): "plugins.normalization",
        ("layer", "layernorm"): "plugins.normalization",
        ("layer", "dropout"): "plugins.normalization",
        ("loss", "mse"): "plugins.losses",
        ("loss", "bce"): "plugins.losses",
        ("loss", "cross_entropy"): "plugins.losses",
        ("loss", "ce"): "plugins.losses",
        ("loss", "mae"): "plugins.losses",
        ("loss", "huber"): "plugins.losses",
        ("initializer", "default"): "plugins.initializers",
        ("initializer", "he"): "plugins.initializers",
        ("initializer", "xavier"): "plugins.initializers",
        ("optimizer", "sgd"): "plugins.optimizers",
        ("optimizer", "adam"): "plugins.optimizers",
        ("optimizer", "adamw"): "plugins.optimizers",
        **{("dataset", name): "plugins.datasets" for name in (
            "disk", "moons", "circles", "xor", "spiral", "gauss", "digits", "iris", "wine",
            "breast_cancer", "diabetes", "file")},
        ("dataset", "mnist"): "plugins.image_datasets",
        ("dataset", "denoise"): "plugins.image_datasets",
        ("dataset", "sine"): "plugins.regression_datasets",
        ("dataset", "hills"): "plugins.regression_datasets",
        ("layer", "embedding"): "plugins.embedding",
        ("layer", "position"): "plugins.embedding",
        ("layer", "attention"): "plugins.attention",
        ("layer", "transformer_block"): "plugins.transformer",
        ("layer", "gpt"): "plugins.transformer",
        ("loss", "token_cross_entropy"): "plugins.losses",
        ("dataset", "text"): "plugins.text_datasets",
        ("dataset", "pydoc"): "plugins.text_datasets",
    }
    got = {(e.kind, e.name): e.plugin for e in registry.entries()}
    assert got == expected
    assert all(e.summary for e in registry.entries())


def test_builtin_set_is_what_registry_toml_lists(registry):
    modules = read_manifest(builtin_manifest())
    assert {e.plugin for e in registry.entries()} == set(modules)
    assert builtin_manifest().name == "registry.toml"


def test_manifest_is_read_not_executed(tmp_path):
    path = tmp_path / "registry.toml"
    path.write_text('[plugins]\nmodules = ["a.b", "c"]\n')
    assert read_manifest(path) == ["a.b", "c"]
    path.write_text('[plugins]\nmodules = "a.b"\n')
    with pytest.raises(RegistrationError, match="list of module names"):
        read_manifest(path)


def test_a_third_party_plugin_registers_like_a_builtin(registry):
    class Double:
        """Multiplies by two."""

        def forward(self, x):
            return 2 * x

        def backward(self, g):
            return 2 * g

        def parameters(self):
            return []

    plugin = types.SimpleNamespace(register_activations=hookimpl(lambda register: register("double", Double)))
    reg = Registry()
    reg.add_plugin(plugin, name="my_plugin")
    entry = reg.get("activation", "double")
    assert (entry.plugin, entry.summary) == ("my_plugin", "Multiplies by two.")
    assert torch.equal(entry.create().forward(torch.ones(2)), torch.full((2,), 2.0))


def test_unknown_name_suggests_close_names_and_the_list_command(registry):
    with pytest.raises(UnknownComponentError) as info:
        registry.get("activation", "tanhh")
    message = str(info.value)
    assert "unknown activation 'tanhh'" in message
    assert "did you mean 'tanh'" in message
    assert "nn-cli list activation" in message


def test_unknown_kind_lists_the_kinds(registry):
    with pytest.raises(UnknownComponentError, match="unknown kind 'layers'.*'layer'"):
        registry.names("layers")


def test_duplicate_name_names_both_plugins_unless_overriding():
    def plugin(override):
        return types.SimpleNamespace(
            register_losses=hookimpl(
                lambda register: register("mse", _Loss, override=override)
            )
        )

    reg = Registry()
    reg.add_plugin(plugin(False), name="first")
    with pytest.raises(RegistrationError, match="'first' and 'second'"):
        reg.add_plugin(plugin(False), name="second")
    reg.add_plugin(plugin(True), name="third")
    assert reg.get("loss", "mse").plugin == "third"


def test_object_missing_a_protocol_method_is_refused():
    class NoBackward:
        def forward(self, x):
            return x

        def parameters(self):
            return []

    plugin = types.SimpleNamespace(
        register_layers=hookimpl(lambda register: register("half", NoBackward))
    )
    with pytest.raises(RegistrationError, match="without method backward"):
        Registry().add_plugin(plugin, name="broken")


def test_every_kind_has_a_hook_spec():
    import core.plugin.hookspecs
    from core.plugin.registry import HOOKS

    assert set(HOOKS) == set(KINDS)
    for hook in HOOKS.values():
        assert callable(getattr(core.plugin.hookspecs, hook))


class _Loss:
    def forward(self, prediction, target):
        return (prediction - target).sum()

    def backward(self):
        return None


def test_layer_specs_build_the_same_network_as_build_mlp(registry):
    from core import LayerSpec, build_mlp, build_stack, mlp_specs

    specs = mlp_specs([4, 3], 1, "relu")
    assert [s.name for s in specs] == ["linear", "relu", "linear", "relu", "linear"]
    assert [LayerSpec.from_dict(s.to_dict()) for s in specs] == specs
    a = build_stack(registry, specs, 2, init="he", generator=torch.Generator().manual_seed(0))
    b = build_mlp(registry, 2, [4, 3], 1, activation="relu", init="he",
                  generator=torch.Generator().manual_seed(0))
    assert [m.weight.value.shape for m in a.modules[::2]] == [(2, 4), (4, 3), (3, 1)]
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p.value, q.value)
