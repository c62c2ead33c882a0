"""Test-wide settings: headless MuJoCo, and a ROS 2 graph of our own.

Every pytest process uses its own ROS_DOMAIN_ID (derived from its PID) and
localhost-only discovery, so parallel runs never cross-talk; subprocesses the
tests start inherit both.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "osmesa")

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
# Valid domain ids for localhost are 0..101 (and 215..232); keep clear of the default 0.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = (REPO / ".." / "shared" / "data" / "real").resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_real() -> Path:
    """``../shared/data/real`` beside the repository (skips when absent)."""
    if not SHARED_REAL.is_dir():
        pytest.skip(f"real camera data not found at {SHARED_REAL}")
    return SHARED_REAL
