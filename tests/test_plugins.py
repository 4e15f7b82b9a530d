"""Plugin discovery and failure isolation, through nn-cli as a user meets them.

Each deliberately broken plugin is a file written to tmp_path and loaded with --plugin or
a user's registry.toml; the built-ins must keep training beside it.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from core.plugin.discovery import load_registry
from core.errors import PluginError

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--epochs", "1", "--hidden", "4", "--json"]
STACK_FAST = ["--epochs", "1", "--json"]  # --layers is the network: no --hidden beside it

GOOD = '''
from core import hookimpl
from core.lazy import torch


class Cube:
    """x ** 3."""

    def forward(self, x):
        self.x = x
        return x ** 3

    def backward(self, grad_output):
        return grad_output * 3 * self.x ** 2

    def parameters(self):
        return []


class Gain:
    """Learned gain per feature."""

    def __init__(self, in_features: int, start: float = 1.0, dtype=None):
        from core import Parameter

        self.g = Parameter.of(torch.full((in_features,), start, dtype=dtype), "gain")
        self.out_features = in_features

    def forward(self, x):
        self.x = x
        return x * self.g.value

    def backward(self, grad_output):
        self.g.grad += (grad_output * self.x).sum(0)
        return grad_output * self.g.value

    def parameters(self):
        return [self.g]


@hookimpl
def register_activations(register):
    register("cube", Cube)


@hookimpl
def register_layers(register):
    register("gain", Gain)
'''

BROKEN = {  # file stem -> (source, fragment the warning must contain)
    "fails_import": ("import no_such_module_anywhere\n", "ModuleNotFoundError: No module named 'no_such_module_anywhere'"),
    "hook_raises": (
        "from core import hookimpl\n\n@hookimpl\ndef register_losses(register):\n"
        "    raise ValueError('boom in the hook')\n",
        "hook register_losses raised ValueError: boom in the hook",
    ),
    "duplicate": (
        "from core import hookimpl\nfrom plugins.activations import Tanh\n\n@hookimpl\n"
        "def register_activations(register):\n    register('tanh', Tanh)\n",
        "activation 'tanh' is registered by both 'plugins.activations' (builtin nn-scratch) and 'duplicate' (--plugin ",
    ),
    "no_backward": (
        "from core import hookimpl\n\nclass Half:\n    def forward(self, x):\n        return x / 2\n"
        "    def parameters(self):\n        return []\n\n@hookimpl\ndef register_activations(register):\n"
        "    register('half', Half)\n",
        "registered activation 'half' without method backward",
    ),
    "wrong_signature": (
        "from core import hookimpl\n\n@hookimpl\ndef register_layers(reg):\n    pass\n",
        "pluggy refuses its hook: Plugin 'wrong_signature' for hook 'register_layers'; hookimpl definition: register_layers(reg); Argument(s) {'reg'}",
    ),
    "unknown_hook": (
        "from core import hookimpl\n\n@hookimpl\ndef register_layer(register):\n    pass\n",
        "unknown hook 'register_layer'",
    ),
    "no_marker": (
        "def register_layers(register):\n    pass\n",
        "register_layers lacks @hookimpl",
    ),
}


@pytest.fixture
def run(monkeypatch):
    monkeypatch.delenv("NN_STRICT_PLUGINS", raising=False)
    runner = CliRunner()

    def invoke(*args, env=None):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)

    return invoke


def write(folder: Path, stem: str, source: str) -> Path:
    path = folder / f"{stem}.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_a_plugin_file_registers_and_trains_in_an_assembled_stack(run, tmp_path):
    path = write(tmp_path, "extra_bits", GOOD)
    listed = run("--plugin", path, "list", "--json")
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)}
    assert rows[("activation", "cube")]["source"] == "--plugin"
    assert rows[("layer", "gain")]["origin"] == str(path)
    result = run("train", "--plugin", path, "--layers", "linear:out=6,gain:start=0.5,cube,linear:out=1", *STACK_FAST)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["settings"]["layers"] == "linear:out=6,gain:start=0.5,cube,linear:out=1"
    assert result.stderr.count("warning") == 0


def test_train_result_specs_are_the_specs_built(tmp_path):
    from core import TrainSettings, train

    registry = load_registry([str(write(tmp_path, "extra_bits", GOOD))])
    result = train(TrainSettings(layers="linear:out=3,gain,tanh,linear:out=1:init=he", epochs=1),
                   registry)
    assert [s.to_dict() for s in result.specs] == [
        {"kind": "layer", "name": "linear", "args": {"out_features": 3}},
        {"kind": "layer", "name": "gain", "args": {}},
        {"kind": "activation", "name": "tanh", "args": {}},
        {"kind": "layer", "name": "linear", "args": {"out_features": 1, "init": "he"}},
    ]
    assert [type(m).__name__ for m in result.model.modules] == ["Linear", "Gain", "Tanh", "Linear"]


def test_a_users_registry_toml_in_the_working_directory_is_loaded(run, tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    write(tmp_path / "mine", "local_module", GOOD)  # imported by module name
    write(tmp_path / "mine", "by_path", GOOD.replace('"cube"', '"cube2"').replace('"gain"', '"gain2"'))
    (tmp_path / "mine" / "registry.toml").write_text(
        '[plugins]\nmodules = ["local_module", "by_path.py"]\n'
    )
    monkeypatch.chdir(tmp_path / "mine")
    result = run("plugins", "--json")
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["local_module"]["source"] == "registry.toml"
    assert records["local_module"]["components"] == ["layer gain", "activation cube"]
    assert records["by_path"]["components"] == ["layer gain2", "activation cube2"]
    assert records["plugins.linear"]["source"] == "builtin"  # the built-ins still underneath
    train = run("train", "--act", "cube2", "--lr", "0.01", *FAST)
    assert train.exit_code == 0, train.output


def test_registry_option_names_the_file_and_a_missing_one_is_an_error(run, tmp_path):
    write(tmp_path, "listed", GOOD)
    toml = tmp_path / "elsewhere.toml"
    toml.write_text('[plugins]\nmodules = ["listed.py"]\n')
    assert "cube" in run("--registry", toml, "list", "activation").stdout
    assert "cube" in run("list", "activation", "--registry", toml).stdout
    result = run("list", "--registry", tmp_path / "missing.toml")
    assert result.exit_code == 2
    assert "missing.toml" in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("stem", sorted(BROKEN))
def test_a_broken_plugin_is_reported_once_and_the_builtins_still_train(run, tmp_path, stem):
    source, fragment = BROKEN[stem]
    path = write(tmp_path, stem, source)
    result = run("--plugin", path, "train", *FAST)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("nn-cli: warning")]
    assert len(warnings) == 1, result.stderr
    assert f"plugin '{stem}' (--plugin {path}) not loaded: " in warnings[0]
    assert fragment in warnings[0]
    assert "Traceback" not in result.stderr
    assert 0 <= json.loads(result.stdout)["test_error"] <= 1


@pytest.mark.parametrize("stem", sorted(BROKEN))
def test_strict_mode_makes_a_broken_plugin_fatal(run, tmp_path, stem):
    path = write(tmp_path, stem, BROKEN[stem][0])
    for args, env in [(["--strict-plugins", "--plugin", path, "list"], None),
                      (["list", "--plugin", path], {"NN_STRICT_PLUGINS": "1"})]:
        result = run(*args, env=env)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nn-cli: error: plugin ")
        assert BROKEN[stem][1] in lines[0] and "strict mode" in lines[0]
        assert result.stdout == ""


def test_a_refused_plugin_leaves_none_of_its_components(tmp_path):
    half_good = GOOD + textwrap.dedent('''
        @hookimpl
        def register_losses(register):
            register("not_a_loss", object)
    ''')
    errors = []
    registry = load_registry([str(write(tmp_path, "half_good", half_good))], on_error=errors.append)
    assert [r.name for r in errors] == ["half_good"]
    assert "without method forward" in errors[0].error
    assert "cube" not in registry.names("activation") and "gain" not in registry.names("layer")
    assert registry.records["half_good"].components == []


def test_override_true_replaces_a_builtin(run, tmp_path):
    path = write(tmp_path, "better_tanh", BROKEN["duplicate"][0].replace(
        "register('tanh', Tanh)", "register('tanh', Tanh, summary='mine', override=True)"))
    rows = json.loads(run("list", "activation", "--json", "--plugin", path).stdout)
    assert next(r for r in rows if r["name"] == "tanh")["plugin"] == "better_tanh"


def test_plugins_json_reports_each_plugin_its_components_and_errors(run, tmp_path):
    good = write(tmp_path, "extra_bits", GOOD)
    bad = write(tmp_path, "fails_import", BROKEN["fails_import"][0])
    result = run("plugins", "--json", "-p", good, "-p", bad)
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["extra_bits"] == {
        "name": "extra_bits", "source": "--plugin", "origin": str(good), "distribution": None,
        "version": None, "path": str(good), "components": ["layer gain", "activation cube"],
        "error": None,
    }
    assert records["fails_import"]["error"].startswith("import failed: ModuleNotFoundError")
    assert records["plugins.activations"]["components"] == [
        "activation relu", "activation tanh", "activation sigmoid", "activation leaky_relu",
        "activation gelu"]
    text = run("plugins", "-p", good).stdout
    assert "extra_bits  [--plugin]" in text and "registered: layer gain, activation cube" in text


def test_info_shows_signature_defaults_doc_and_plugin(run, tmp_path):
    data = json.loads(run("info", "linear", "--json").stdout)
    assert data["signature"].startswith("linear(in_features: 'int', out_features: 'int'")
    params = {p["name"]: p for p in data["parameters"]}
    assert params["out_features"]["required"] and params["dtype"]["default"] == "None"
    assert params["in_features"]["filled_by"] == "inferred from the layer before"
    assert (data["plugin"], data["source"]) == ("plugins.linear", "builtin")
    assert data["doc"].startswith("Fully connected layer")
    path = write(tmp_path, "extra_bits", GOOD)
    text = run("info", "gain", "-p", path).stdout
    assert "gain(in_features: int, start: float = 1.0, dtype=None)" in text
    assert "start: float  (default 1.0)" in text and f"extra_bits (--plugin {path})" in text


def test_info_on_a_name_of_two_kinds_asks_for_the_kind(run, tmp_path):
    path = write(tmp_path, "tanh_layer", GOOD.replace('register("gain", Gain)', 'register("tanh", Gain)'))
    result = run("info", "tanh", "-p", path)
    assert result.exit_code == 2
    assert "several kinds: layer, activation" in result.stderr and "--kind" in result.stderr
    assert "Learned gain" in run("info", "tanh", "--kind", "layer", "-p", path).stdout
    assert "unknown component 'tanhh'" in run("info", "tanhh").stderr


@pytest.mark.parametrize(
    ("layers", "fragments"),
    [
        ("linear:outt=3,linear:out=1", ["'outt' is not an argument", "out_features, init"]),
        ("linear,linear:out=1", ["layer 'linear' needs out_features"]),
        ("linear:out=4,tnah,linear:out=1", ["unknown layer or activation 'tnah'", "did you mean 'tanh'"]),
        ("linear:in_features=2:out=1", ["in_features is filled in by the assembler"]),
        ("linear:out=3", ["must end with one output feature", "got 3"]),
        ("linear:out", ["'out' is not key=value"]),
        ("", ["at least one component"]),
        ("linear:out=2,tanh:slope=1,linear:out=1", ["activation 'tanh'", "'slope' is not an argument", "none"]),
    ],
)
def test_bad_layers_are_one_line_errors(run, layers, fragments):
    result = run("train", "--layers", layers, *STACK_FAST)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nn-cli: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


LAYERNORM = Path(__file__).resolve().parent / "plugin_layernorm.py"


@pytest.mark.parametrize(
    ("layers", "fragments"),
    [
        ("linear:out=-5,linear:out=1", ["layer 'linear'", "out_features must be", ">= 1", "-5"]),
        ("linear:out=0,linear:out=1", ["layer 'linear'", "out_features must be", ">= 1", "got 0"]),
        ("linear:out=abc,linear:out=1", ["layer 'linear'", "out_features must be an int", "'abc'"]),
        ("linear:out=2.5,linear:out=1", ["layer 'linear'", "out_features must be an int", "2.5"]),
        ("linear:out=true,linear:out=1", ["layer 'linear'", "out_features must be an int", "True"]),
        ("linear:out=25:runs=2,linear:out=1", ["layer 'linear'", "runs is filled in by the assembler"]),
        ("linear:out=25:device=cuda,linear:out=1", ["layer 'linear'", "device is filled in by the assembler"]),
        ("linear:out=4,my_layernorm:eps=0,linear:out=1", ["layer 'my_layernorm'", "eps must be > 0, got 0"]),
        ("linear:out=4,my_layernorm:eps=abc,linear:out=1", ["layer 'my_layernorm'", "eps must be a float", "'abc'"]),
        ("linear:out=4,my_layernorm:eps=-1e-3,linear:out=1", ["layer 'my_layernorm'", "eps must be > 0"]),
    ],
)
def test_bad_layer_values_are_one_line_errors_without_a_traceback(run, layers, fragments):
    result = run("train", "--plugin", LAYERNORM, "--layers", layers, *STACK_FAST)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nn-cli: error: "), result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_arguments_the_assembler_fills_in_are_not_offered(run):
    result = run("train", "--layers", "linear:size=3,linear:out=1", *STACK_FAST)
    line = result.stderr.strip()
    assert "its arguments are out_features, init " in line, line
    assert "runs" not in line and "device" not in line and "dtype" not in line
    info = json.loads(run("info", "linear", "--json").stdout)
    filled = {p["name"]: p["filled_by"] for p in info["parameters"]}
    assert filled["runs"] and filled["device"]  # `nn-cli info` says who fills them


def test_a_plugin_layer_with_good_values_trains(run):
    result = run("train", "--plugin", LAYERNORM, "--layers",
                 "linear:out=4,my_layernorm:eps=1e-3,tanh,linear:out=1", *STACK_FAST)
    assert result.exit_code == 0, result.output


def fake_distribution(site: Path, module_source: str, module: str) -> None:
    """An installed distribution `fake-extras 1.2.3` with an nn_scratch entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(module_source))
    info = site / "fake_extras-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-extras\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[nn_scratch]\nfake = {module}\n")


def test_installed_entry_points_load_unless_autoload_is_disabled(run, tmp_path, monkeypatch):
    fake_distribution(tmp_path, GOOD, "fake_extras_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NN_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    rows = json.loads(run("list", "--json").stdout)
    cube = next(r for r in rows if r["name"] == "cube")
    assert (cube["plugin"], cube["source"], cube["origin"]) == ("fake", "entry point", "fake-extras 1.2.3")
    record = json.loads(run("plugins", "--json").stdout)[-1]
    assert (record["distribution"], record["version"]) == ("fake-extras", "1.2.3")
    assert "[fake, entry point fake-extras 1.2.3]" in run("list", "activation").stdout
    off = run("list", "--json", env={"NN_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "cube" not in {r["name"] for r in json.loads(off.stdout)}
    # an explicit --plugin still loads it by module name, as pytest's -p does
    again = run("list", "--json", "-p", "fake_extras_plugin", env={"NN_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "cube" in {r["name"] for r in json.loads(again.stdout)}


def test_a_broken_installed_plugin_is_isolated(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "raise RuntimeError('half-installed')\n", "fake_broken_plugin")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NN_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    errors = []
    registry = load_registry(on_error=errors.append)
    assert [(r.name, r.source, r.error) for r in errors] == [
        ("fake", "entry point", "import failed: RuntimeError: half-installed")]
    assert "tanh" in registry.names("activation")
    with pytest.raises(PluginError, match="fake-extras 1.2.3.*half-installed"):
        load_registry(strict=True)


@pytest.mark.parametrize("args", [["--help"], ["list"], ["info", "linear"], ["plugins"]])
def test_listing_commands_never_import_torch(args):
    code = (
        "import sys\nsys.argv = ['nn-cli', *sys.argv[1:]]\nimport cli\n"
        "try:\n    cli.main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('torch loaded' if 'torch' in sys.modules else 'torch absent', file=sys.stderr)\n"
    )
    env = {**os.environ, "NN_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("torch absent"), done.stderr


def test_a_factory_given_by_path_is_imported_only_when_built(run, tmp_path, monkeypatch):
    (tmp_path / "heavy_cube.py").write_text(GOOD)  # stands for a module with heavy imports
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_cube", raising=False)
    path = write(tmp_path, "light", """
        from core import hookimpl

        @hookimpl
        def register_activations(register):
            register("lazy_cube", "heavy_cube:Cube", summary="x ** 3, imported when built.")
            register("missing", "no_such_heavy_module:Thing", summary="never importable.")
    """)
    listed = run("list", "activation", "-p", path)
    assert re.search(r"lazy_cube +x \*\* 3, imported when built\.", listed.stdout)
    assert "heavy_cube" not in sys.modules
    result = run("train", "--act", "lazy_cube", "--lr", "0.01", "-p", path, *FAST)
    assert result.exit_code == 0, result.output
    assert "heavy_cube" in sys.modules
    broken = run("train", "--act", "missing", "-p", path, *FAST)
    assert broken.exit_code == 2
    assert "activation 'missing' could not be loaded from 'no_such_heavy_module:Thing'" in broken.stderr
    assert "ModuleNotFoundError" in broken.stderr


def test_a_factory_path_needs_module_attr_and_a_summary(tmp_path):
    path = write(tmp_path, "no_summary", """
        from core import hookimpl

        @hookimpl
        def register_activations(register):
            register("x", "heavy:Thing")
    """)
    errors = []
    load_registry([str(path)], on_error=errors.append)
    assert "must be 'module:attr' and come with summary=" in errors[0].error


def test_lazy_module_imports_on_first_attribute_and_then_reads_directly(monkeypatch):
    from core.lazy import LazyModule

    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    lazy = LazyModule("colorsys")
    assert "colorsys" not in sys.modules
    assert lazy.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert "colorsys" in sys.modules and "rgb_to_hsv" in vars(lazy)  # copied: no call next time


def test_a_broken_entry_in_a_users_registry_toml_is_reported_with_that_file(run, tmp_path):
    write(tmp_path, "hook_raises", BROKEN["hook_raises"][0])
    write(tmp_path, "extra_bits", GOOD)
    toml = tmp_path / "registry.toml"
    toml.write_text('[plugins]\nmodules = ["hook_raises.py", "extra_bits"]\n')
    result = run("--registry", toml, "train", "--act", "cube", "--lr", "0.01", *FAST)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("nn-cli: warning") == 1
    assert f"plugin 'hook_raises' (registry.toml {toml}) not loaded: hook register_losses " \
           "raised ValueError: boom in the hook; skipped" in result.stderr
    toml.write_text("[plugins\n")
    broken = run("--registry", toml, "list")
    assert broken.exit_code == 0 and "TOMLDecodeError" in broken.stderr and "tanh" in broken.stdout


def test_info_with_an_unknown_kind_is_one_line():
    from typer.testing import CliRunner

    from cli import app

    result = CliRunner().invoke(app, ["info", "linear", "--kind", "nosuch"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "nn-cli: error: unknown kind 'nosuch'; registered: activation, dataset, initializer, "
        "layer, loss, optimizer (see `nn-cli list`)"
    )
