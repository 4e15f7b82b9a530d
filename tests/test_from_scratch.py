"""The from-scratch rule: framework code uses torch only as a tensor library."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN_MODULES = ("torch.nn", "torch.autograd", "torch.optim", "torch.func")
# The one exception the rule names: im2col and its adjoint only move numbers (conv2d uses them).
ALLOWED = ("torch.nn.functional.unfold", "torch.nn.functional.fold")
# nn_testing/ is the plugin authors' test kit: it uses torch.autograd as the oracle against
# which hand-written backwards are checked, as tests/ do. It lies outside the framework's
# folders, and no framework file may import it (test below), so training never touches it.
TEST_KIT = ROOT / "nn_testing"
FRAMEWORK_FILES = sorted([
    *ROOT.glob("core/**/*.py"), *ROOT.glob("plugins/**/*.py"), *ROOT.glob("playground/**/*.py"),
    ROOT / "cli.py",
])


def violations(source: str) -> list[str]:
    """What in `source` breaks the rule: forbidden imports, attribute paths, requires_grad."""
    found = []
    tree = ast.parse(source)
    allowed_parts = set()  # `torch.nn.functional` and `torch.nn` inside an allowed path
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and ast.unparse(node) in ALLOWED:
            allowed_parts |= {id(n) for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in allowed_parts:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute):
            names = [ast.unparse(node)]
            if node.attr in ("requires_grad", "requires_grad_", "grad_fn"):
                found.append(f"line {node.lineno}: {node.attr}")
        elif isinstance(node, ast.keyword) and node.arg == "requires_grad":
            found.append(f"line {node.value.lineno}: requires_grad=")
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES):
                found.append(f"line {node.lineno}: {name}")
    return found


@pytest.mark.parametrize(
    "source",
    [
        "import torch.nn",
        "import torch.nn.functional as F",
        "from torch import nn",
        "from torch import autograd",
        "from torch.optim import SGD",
        "import torch\nx = torch.func.grad",
        "import torch\ny = torch.autograd.grad(a, b)",
        "import torch\nt = torch.zeros(3, requires_grad=True)",
        "t.requires_grad_()",
        "t.requires_grad = True",
        "import torch\nx = torch.nn.functional.conv2d(a, w)",
        "import torch\nf = torch.nn.functional\ny = f.unfold(x, 3)",
        "from torch.nn.functional import unfold",
    ],
)
def test_checker_catches_each_forbidden_use(source):
    assert violations(source)


def test_checker_allows_tensor_operations():
    assert violations("import torch\nx = torch.tanh(torch.zeros(3)) @ torch.ones(3, 3)") == []


def test_checker_allows_unfold_and_fold_spelt_out():
    assert violations("import torch\nc = torch.nn.functional.unfold(x, 3)\n"
                      "y = torch.nn.functional.fold(c, (5, 5), 3)") == []


def test_framework_files_were_found():
    names = {p.relative_to(ROOT).as_posix() for p in FRAMEWORK_FILES}
    assert {"cli.py", "core/plugin/registry.py", "plugins/linear.py"} <= names


@pytest.mark.parametrize("path", FRAMEWORK_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_framework_code_uses_torch_only_as_a_tensor_library(path):
    assert violations(path.read_text()) == []


def test_the_test_kit_lies_outside_the_framework_and_nothing_in_it_imports_the_kit():
    assert TEST_KIT.is_dir() and not set(TEST_KIT.glob("*.py")) & set(FRAMEWORK_FILES)
    assert any(violations(p.read_text()) for p in TEST_KIT.glob("*.py"))  # autograd: the oracle
    for path in FRAMEWORK_FILES:
        assert "nn_testing" not in path.read_text(), path
