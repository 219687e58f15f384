"""Pick your hardware first: the catalogue, training for a target, deploying to it with the precision that keeps the
accuracy, and a model card that accumulates. The installed command is run as a user types it."""
from __future__ import annotations

import json

import pytest

from helpers import REPO, draw_shapes, hostile_to_int8, mobiclass
from mobiclass.export import export
from mobiclass.export.exporter import allowed_loss, exceeds
from mobiclass.targets import KINDS, TARGETS, estimate

ISSUE_TARGETS = ["laptop", "phone", "raspberry-pi", "rk3588", "rk3566", "maixcam", "k210", "esp32-s3", "stm32h7",
                 "nicla-vision", "ethos-u55", "browser"]
QUICK_EPOCHS = ["--head-epochs", "5", "--epochs", "1", "--unfreeze", "2", "--batch-size", "16", "--workers", "0",
                "--quiet"]


def test_every_targets_recipes_fit_its_own_budget():
    assert sorted(TARGETS) == sorted(ISSUE_TARGETS)
    for target in TARGETS.values():
        assert target.kind in KINDS and target.precisions and target.recipes
        for recipe in target.recipes:
            budget = estimate(target, recipe, num_classes=5)
            assert budget.fits, f"{target.name}: {recipe.describe()} does not fit: {budget.reasons}"
            assert budget.ram_kb <= target.ram_kb and budget.flash_kb <= target.flash_kb


def test_targets_lists_the_catalogue_as_json(tmp_path):
    done = mobiclass("targets", "--format", "json", cwd=tmp_path)
    rows = json.loads(done.stdout)
    assert done.returncode == 0 and [row["name"] for row in rows] == ISSUE_TARGETS
    k210 = rows[ISSUE_TARGETS.index("k210")]
    assert (k210["kind"], k210["format"], k210["ram_kb"], k210["flash_kb"]) == ("npu", "k210", 760, 5_500)
    assert k210["recipes"][0] == {"model": "mobilenet_v2", "width_mult": 1.0, "image_size": 128}
    assert all({"name", "kind", "format", "ram_kb", "flash_kb"} <= set(row) for row in rows)


def test_an_option_that_cannot_fit_is_refused_before_any_work(tmp_path):
    data = draw_shapes(tmp_path / "shapes", per_class=2)
    done = mobiclass("train", data, "--target", "k210", "--model", "mobilenet_v2", "--image-size", "224", "--out",
                     tmp_path / "run", cwd=tmp_path)
    assert done.returncode == 2 and not (tmp_path / "run").exists()
    assert done.stderr.strip() == (
        "error: mobilenet_v2 width 1 at 224 px does not fit k210: its largest layer needs 1,505 kB of RAM at uint8; "
        "k210 has 760 kB; the nearest recipe that fits: mobilenet_v2 width 1 at 128 px; train it with --model "
        "mobilenet_v2 --width-mult 1 --image-size 128")
    done = mobiclass("train", data, "--target", "pocket-calculator", cwd=tmp_path)
    assert done.returncode == 2 and "unknown target 'pocket-calculator'; targets: laptop, phone," in done.stderr


def test_train_for_a_target_then_deploy_to_it_with_its_budget_in_the_card(tmp_path):
    """train --target k210 alone picks MobileNetV2 at 128 px and records the target; export --target raspberry-pi
    writes the ncnn bundle in its preferred fp16, verified on the ncnn runtime, with RAM, flash and latency."""
    data = draw_shapes(tmp_path / "shapes", per_class=8)
    done = mobiclass("train", data, "--target", "k210", "--out", tmp_path / "run", *QUICK_EPOCHS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "run" / "model.json").read_text())
    assert (manifest["architecture"], manifest["width_mult"], manifest["preprocessing"]["size"]) == \
        ("mobilenet_v2", 1.0, 128)
    assert manifest["training"]["target"] == "k210"
    rows = {row["name"]: row for row in json.loads(mobiclass("targets", "--model", tmp_path / "run", "--format",
                                                             "json", cwd=tmp_path).stdout)}
    assert rows["k210"]["fits"] and rows["k210"]["model"]["trained_for"] and rows["k210"]["model_ram_kb"] == 491.5
    assert not rows["stm32h7"]["fits"] and "stm32h7 has 2,048 kB of flash" in rows["stm32h7"]["reason"]
    done = mobiclass("export", "--model", tmp_path / "run", "--target", "raspberry-pi", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "raspberry-pi: fp16 kept: fp16 loses 0.0% (at most" in done.stdout
    bundle = tmp_path / "run" / "export" / "ncnn"
    assert sorted(p.name for p in bundle.iterdir()) == ["README.md", "classify.py", "labels.txt", "model-card.json",
                                                        "model.ncnn.bin", "model.ncnn.param"]
    card = json.loads((bundle / "model-card.json").read_text())
    entry = card["formats"][card["targets"]["raspberry-pi"]]
    assert (entry["target"], entry["precision"], entry["verified"]) == ("raspberry-pi", "fp16", True)
    assert entry["flash_kb"] == round(sum((bundle / f).stat().st_size for f in ("model.ncnn.param",
                                                                                "model.ncnn.bin")) / 1000, 1)
    assert entry["ram_kb"] == 983.0 and entry["latency_source"].startswith("estimate: scaled by multiply-adds from "
                                                                           "61.88 ms for mobilenet_v2")
    done = mobiclass("export", "--model", tmp_path / "run", "--target", "raspberry-pi", "--half", cwd=tmp_path)
    assert done.returncode == 2 and "leave out --half" in done.stderr
    done = mobiclass("export", "--model", tmp_path / "run", "--target", "stm32h7", cwd=tmp_path)
    assert done.returncode == 2 and "does not fit stm32h7: its weights take 2,228 kB at int8" in done.stderr
    assert not (tmp_path / "run" / "export" / "tflm").exists()


def test_a_model_whose_int8_fails_is_deployed_in_the_next_precision_and_the_card_accumulates(shapes_run, tmp_path):
    _, run = shapes_run
    hostile = hostile_to_int8(run, tmp_path / "hostile")
    out = tmp_path / "export"
    export(hostile, out, formats="onnx,torchscript")
    card = export(hostile, out, target="laptop")
    entry = card["formats"]["onnx"]
    assert card["verified"] and card["targets"] == {"laptop": "onnx"} and entry["precision"] == "fp32"
    assert [(t["precision"], t["verified"]) for t in entry["tried"]] == [("int8", False), ("fp32", True)]
    assert entry["precision_reason"].startswith("int8 loses ") and entry["precision_reason"].endswith(
        "; fp32 kept: fp32 agrees with PyTorch on 100.0% of images")
    assert not (out / "model.int8.onnx").exists() and "onnx-int8" not in card["formats"]
    assert sorted(card["formats"]) == ["onnx", "pytorch", "torchscript"]  # the earlier export's entry is kept
    assert entry["latency_source"] == "measured here: ONNX Runtime, batch 1 (this machine)"
    (out / "model.torchscript.pt").unlink()  # a removed file loses its entry at the next export
    export(hostile, out)
    card = json.loads((out / "model-card.json").read_text())
    assert sorted(card["formats"]) == ["onnx", "pytorch"] and card["targets"] == {"laptop": "onnx"}


@pytest.mark.parametrize("precision, photos, limit, two_photos_pass", [
    ("int8", 53, 0.02, False), ("int8", 40, 1 / 40, False), ("int8", 100, 0.02, True), ("uint8", 9, 1 / 9, False),
    ("fp16", 53, 1 / 53, False),
    ("bf16", 200, 0.01, True), ("fp32", 53, None, None)])
def test_the_accuracy_limit_tolerates_one_photo(precision, photos, limit, two_photos_pass):
    """max(the precision's points, one photo): on 53 photos one photo is 1.9 points, and refusing it says nothing."""
    assert allowed_loss(precision, photos) == limit
    if limit is not None:
        assert not exceeds(1 / photos, limit)
        assert exceeds(2 / photos, limit) is not two_photos_pass


def test_the_readme_shows_the_catalogue_as_it_is(tmp_path):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- targets:catalogue (mobiclass targets --format markdown) -->\n")[1].split("\n<!--")[0]
    assert block == mobiclass("targets", "--format", "markdown", cwd=tmp_path).stdout.strip()
