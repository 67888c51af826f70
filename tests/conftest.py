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


#: Where tools/fall_devset.py builds the real-fall development set by default.
FALL_DEV_DEFAULT = Path("~/.cache/edgepose/fall-dev")


def fall_dev_dir() -> Path:
    """The real-fall development set: $EDGEPOSE_FALL_DEV, else fall-dev beside the checkout
    (as ../shared is), else tools/fall_devset.py's default; skip naming them when absent."""
    env = os.environ.get("EDGEPOSE_FALL_DEV")
    places = [Path(env)] if env else [REPO_ROOT.parent / "fall-dev", FALL_DEV_DEFAULT.expanduser()]
    for place in places:
        if (place / "upfall-video" / "clips.json").is_file():
            return place.resolve()
    pytest.skip(f"the real-fall development set is absent (looked in {', '.join(map(str, places))}; "
                "build it with tools/fall_devset.py)")


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
