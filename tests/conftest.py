"""Shared fixtures: generated signals, and the team data set when it is present."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir():
    """../shared/data beside the checkout, or $PERCEPNET_DATA; None when absent."""
    candidate = Path(os.environ.get("PERCEPNET_DATA", REPO.parent / "shared" / "data"))
    return candidate if (candidate / "speech").is_dir() and (candidate / "noise").is_dir() else None


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if path is None:
        pytest.skip("team data not found: put it at ../shared/data or set PERCEPNET_DATA "
                    "(the synthetic-signal tests cover the same properties)")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
