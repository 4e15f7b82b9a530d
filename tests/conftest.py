import pytest
import torch

from core import default_registry


@pytest.fixture(scope="session")
def registry():
    return default_registry()


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
