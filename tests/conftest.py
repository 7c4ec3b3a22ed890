"""Test-wide settings: one intra-op thread (the models under test are tiny; on a 2-core machine
more threads mostly measure contention) and a private cache folder for tokenizers."""

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def _archlab_cache(tmp_path_factory):
    if "ARCHLAB_CACHE" not in os.environ:
        os.environ["ARCHLAB_CACHE"] = str(tmp_path_factory.mktemp("archlab-cache"))
    yield
