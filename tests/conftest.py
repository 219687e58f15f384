"""Shared fixtures: an isolated cache, no network, real photos, and the shared assets when present."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from helpers import ASSETS, QUICK, TFLITE_V2, draw_shapes


@pytest.fixture(autouse=True, scope="session")
def isolated_environment(tmp_path_factory):
    """Every test runs offline, with its own weights cache and the shared assets where the repo expects them."""
    saved = {k: os.environ.get(k) for k in ("MOBICLASS_HOME", "MOBICLASS_OFFLINE", "MOBICLASS_ASSETS")}
    os.environ["MOBICLASS_HOME"] = str(tmp_path_factory.mktemp("mobiclass-home"))
    os.environ["MOBICLASS_OFFLINE"] = "1"
    os.environ["MOBICLASS_ASSETS"] = str(ASSETS)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict[str, Path]:
    """scikit-image's real sample photos, saved as JPEG files: chelsea (a cat), coffee, rocket, astronaut."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        paths[name] = folder / f"{name}.jpg"
        Image.fromarray(getattr(data, name)()).save(paths[name], quality=92)
    return paths


@pytest.fixture(scope="session")
def lite0():
    from mobiclass import load_classifier

    return load_classifier("efficientnet_lite0", engine="torch")


@pytest.fixture(scope="session")
def mobilenet_v2_tflite():
    if not TFLITE_V2.exists():
        pytest.skip(f"shared MobileNetV2 TFLite weights not found at {TFLITE_V2} (set MOBICLASS_ASSETS)")
    from mobiclass import load_classifier

    return load_classifier("mobilenet_v2", engine="torch")


@pytest.fixture
def shapes(tmp_path) -> Path:
    return draw_shapes(tmp_path / "shapes")


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> tuple[Path, Path]:
    """A short real training run on synthetic shapes (data folder, run folder), shared within a test module."""
    from mobiclass.train import train

    root = tmp_path_factory.mktemp("shapes-run")
    data = draw_shapes(root / "shapes", per_class=16)
    return data, train(data, root / "run", **QUICK).run_dir
