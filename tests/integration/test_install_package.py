"""A regular (non-editable) install finds its own models: `pip install .` into a fresh venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SKIER = REPO_ROOT / "edgepose" / "demo" / "000000000785.jpg"
#: What a wheel is built from; copied so the build writes nothing into the checkout.
PACKAGE_FILES = ("pyproject.toml", "README.md", "LICENSE", "edgepose", "models")

pytestmark = pytest.mark.integration


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_a_wheel_installed_into_a_fresh_venv_runs_detect(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in PACKAGE_FILES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2
        copy(REPO_ROOT / name, source / name)
    # Offline: the build uses this venv's setuptools (the test extra), the install no index.
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(tmp_path / "dist"), str(source), cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("edgepose-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         str(wheel), cwd=tmp_path)
    # Dependencies (numpy, Pillow, the TF Lite runtime) come from this venv, but not
    # this checkout's editable edgepose: a plain path entry processes no .pth files.
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EDGEPOSE_MODELS_DIR")}

    where = _run(str(python), "-c", "import edgepose; print(edgepose.__file__)", cwd=tmp_path, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout
    done = _run(str(venv / "bin" / "edgepose"), "detect", str(SKIER), cwd=tmp_path, env=env)
    [result] = json.loads(done.stdout)
    nose = result["poses"][0]["keypoints"][0]
    assert abs(nose["x"] - 367) < 12 and abs(nose["y"] - 81) < 12  # COCO's ground truth nose
    models = _run(str(venv / "bin" / "edgepose"), "models", "--json", cwd=tmp_path, env=env)
    assert json.loads(models.stdout)["models_dir"] == str(venv / "share" / "edgepose" / "models")
