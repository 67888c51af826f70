"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO_ROOT / "models"


def _shared_dir() -> Path:
    """../shared beside the checkout (CI has it; a user's fresh clone may not)."""
    return Path(os.environ.get("EDGEPOSE_SHARED", REPO_ROOT.parent / "shared")).resolve()


SHARED_DIR = _shared_dir()


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test naming the folder that is missing."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (it lives beside the checkout in ../shared)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def coco_dev() -> Path:
    """../shared/data/coco-kp-dev: 34 COCO photos with person-keypoint ground truth."""
    return shared_path("data", "coco-kp-dev")


@pytest.fixture(scope="session")
def tfjs_reference() -> Path:
    """../shared/reference/posenet-tfjs: what TF.js pose-detection returns on coco-kp-dev."""
    return shared_path("reference", "posenet-tfjs")


@pytest.fixture(scope="session")
def movenet_reference() -> Path:
    """../shared/reference/movenet-tfjs: what TF.js pose-detection's MoveNet returns on coco-kp-dev."""
    return shared_path("reference", "movenet-tfjs")


@pytest.fixture(scope="session")
def coral_models() -> Path:
    """../shared/models/coral-posenet: Coral's own PoseNet files (never copied into the repo)."""
    return shared_path("models", "coral-posenet")
