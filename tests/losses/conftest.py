"""Fixtures for the loss tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from bench.losses import _registry, plugins


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Undo every registration (and plugin bookkeeping) a test makes."""
    before, loaded = _registry.registered_names(), dict(plugins._LOADED)
    yield
    for name in _registry.registered_names() - before:
        _registry.unregister(name)
    plugins._LOADED.clear()
    plugins._LOADED.update(loaded)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Loss tests use tiny tensors: one intra-op thread is faster and immune to a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
