"""Fixtures for every layer's tests."""

import pytest


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Model and training tests run on one torch thread: CI has 2 cores, and small ops on one
    thread are both faster and reproducible. Analysis tests never load torch for this."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
