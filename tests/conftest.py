"""Shared fixtures: an isolated cache, no network, real photos, and the shared assets when present."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("MOBICLASS_ASSETS") or REPO.parent / "shared")
TFLITE_V2 = ASSETS / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
CAT_LABELS = {"tabby", "tiger cat", "Egyptian cat"}

needs_shared_tflite = pytest.mark.skipif(
    not TFLITE_V2.exists(), reason=f"shared MobileNetV2 TFLite weights not found at {TFLITE_V2} (set MOBICLASS_ASSETS)")


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

    return load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def mobilenet_v2_tflite():
    if not TFLITE_V2.exists():
        pytest.skip(f"shared MobileNetV2 TFLite weights not found at {TFLITE_V2} (set MOBICLASS_ASSETS)")
    from mobiclass import load_classifier

    return load_classifier("mobilenet_v2")


def draw_shapes(folder: Path, per_class: int = 16, size: int = 64, seed: int = 0,
                classes=("circle", "square", "triangle")) -> Path:
    """A small synthetic dataset: one folder per shape, random colours, positions and sizes."""
    import random

    from PIL import ImageDraw

    rng = random.Random(seed)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
            draw = ImageDraw.Draw(image)
            r = rng.randrange(size // 5, size // 3)
            cx, cy = rng.randrange(r, size - r), rng.randrange(r, size - r)
            colour = tuple(rng.randrange(256) for _ in range(3))
            if name == "circle":
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
            elif name == "square":
                draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
            image.save(folder / name / f"{name}_{i:03d}.png")
    return folder


@pytest.fixture
def shapes(tmp_path) -> Path:
    return draw_shapes(tmp_path / "shapes")


# Small, fast settings for real (short) training runs in tests.
QUICK = dict(model="efficientnet_lite0", image_size=64, head_epochs=20, feature_views=1, epochs=2, unfreeze="2",
             batch_size=16, workers=0, progress=False)


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory) -> tuple[Path, Path]:
    """A short real training run on synthetic shapes (data folder, run folder), shared within a test module."""
    from mobiclass.train import train

    root = tmp_path_factory.mktemp("shapes-run")
    data = draw_shapes(root / "shapes", per_class=16)
    return data, train(data, root / "run", **QUICK).run_dir
