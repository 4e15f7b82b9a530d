"""fit tunes glibc's malloc once (core/training/allocator.py): freed temporaries stay with the process."""

import sys

import pytest

from core.training import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_tunes_glibc_once_and_training_calls_it(monkeypatch):
    assert allocator.keep_freed_memory() is True  # mallopt returned 1 for both settings
    calls = []
    import core.training.loop as loop

    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1))
    from core import TrainSettings, default_registry, train

    train(TrainSettings(epochs=1), default_registry())
    assert calls  # the loop asks for it before its first step


def test_without_glibc_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    allocator.keep_freed_memory.cache_clear()
    try:
        assert allocator.keep_freed_memory() is False
    finally:
        allocator.keep_freed_memory.cache_clear()
