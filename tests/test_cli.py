"""The command line: predict's output contract and exit codes, models, import-weights."""
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import CAT_LABELS, TFLITE_V2, needs_shared_tflite, run_cli
from mobiclass.cli import main



@pytest.fixture
def mixed_inputs(tmp_path, photos):
    """Real photos, odd-but-valid images and broken files, in a known order."""
    shutil.copy(photos["chelsea"], tmp_path / "1-cat.jpg")
    (tmp_path / "2-text.jpg").write_text("just text")
    (tmp_path / "3-truncated.jpg").write_bytes(photos["coffee"].read_bytes()[:2000])
    (tmp_path / "4-empty.jpg").write_bytes(b"")
    Image.open(photos["coffee"]).convert("RGBA").save(tmp_path / "5-coffee-rgba.png")
    Image.open(photos["coffee"]).convert("CMYK").save(tmp_path / "6-coffee-cmyk.jpg")
    Image.new("RGB", (1, 1), "white").save(tmp_path / "7-dot.png")
    return tmp_path


def test_predict_json_contract_with_bad_inputs(capsys, mixed_inputs):
    code, out, _ = run_cli(capsys, "predict", mixed_inputs, mixed_inputs / "missing.jpg", "--format", "json",
                       "--top-k", "3", "--batch-size", "2")
    results = json.loads(out)
    assert code == 1  # some images failed; the others were still classified
    assert [r["path"].rsplit("/", 1)[-1] for r in results] == [
        "1-cat.jpg", "2-text.jpg", "3-truncated.jpg", "4-empty.jpg", "5-coffee-rgba.png", "6-coffee-cmyk.jpg",
        "7-dot.png", "missing.jpg"]
    cat, text, truncated, empty, rgba, cmyk, dot, missing = results
    assert cat["label"] in CAT_LABELS and set(cat) == {"path", "label", "index", "confidence", "top_k"}
    assert [set(t) for t in cat["top_k"]] == [{"label", "index", "confidence"}] * 3
    assert cat["top_k"][0] == {"label": cat["label"], "index": cat["index"], "confidence": cat["confidence"]}
    assert cat["confidence"] >= cat["top_k"][1]["confidence"] >= cat["top_k"][2]["confidence"]
    assert text == {"path": str(mixed_inputs / "2-text.jpg"), "error": "not an image, or a format Pillow cannot read"}
    assert truncated["error"].startswith("truncated or corrupt image data")
    assert empty["error"] == "empty file" and missing["error"] == "no such file"
    assert rgba["label"] == cmyk["label"] == "espresso"
    assert 0 <= dot["confidence"] <= 1


def test_predict_all_good_exits_zero_and_keeps_input_order(capsys, photos):
    code, out, _ = run_cli(capsys, "predict", photos["coffee"], photos["chelsea"], "--format", "json", "--top-k", "1")
    results = json.loads(out)
    assert code == 0
    assert [r["label"] in CAT_LABELS for r in results] == [False, True] and results[0]["label"] == "espresso"


def test_predict_csv_and_table(capsys, photos, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"")
    code, out, _ = run_cli(capsys, "predict", photos["coffee"], tmp_path / "bad.jpg", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 1
    assert rows[0]["label"] == "espresso" and rows[0]["top_k"].startswith("espresso:")
    assert rows[1]["error"] == "empty file" and rows[1]["label"] == ""
    code, out, _ = run_cli(capsys, "predict", photos["coffee"])
    assert code == 0 and "espresso" in out and "efficientnet_lite0" in out


@needs_shared_tflite
def test_predict_with_imported_mobilenet_v2(capsys, photos):
    code, out, _ = run_cli(capsys, "predict", photos["chelsea"], photos["coffee"], "--model", "mobilenet_v2",
                       "--format", "json")
    labels = [r["label"] for r in json.loads(out)]
    assert code == 0 and labels[0] in CAT_LABELS and labels[1] == "espresso"


@needs_shared_tflite
def test_import_weights_then_predict_with_the_file(capsys, photos, tmp_path):
    out_file = tmp_path / "v2.safetensors"
    code, _, err = run_cli(capsys, "import-weights", TFLITE_V2, "--model", "mobilenet_v2", "--out", out_file)
    assert code == 0 and "mobilenet_v2 width 1.0, 1000 classes, padding tf" in err
    code, out, _ = run_cli(capsys, "predict", photos["chelsea"], "--weights", out_file, "--format", "json")
    assert code == 0 and json.loads(out)[0]["label"] in CAT_LABELS
    code, out, _ = run_cli(capsys, "predict", photos["coffee"], "--weights", TFLITE_V2, "--model", "mobilenet_v2",
                       "--format", "json")
    assert code == 0 and json.loads(out)[0]["label"] == "espresso"


def test_predict_with_a_run_folder(capsys, lite0, photos, tmp_path):
    lite0.save(tmp_path / "runs" / "lite")
    code, out, _ = run_cli(capsys, "predict", photos["coffee"], "--model", tmp_path / "runs" / "lite", "--format",
                           "json")
    assert code == 0 and json.loads(out)[0]["label"] == "espresso"


@pytest.mark.parametrize("argv, message", [
    (["predict", "x.jpg", "--model", "mobilenet_v9"], "unknown model 'mobilenet_v9'"),
    (["predict", "x.jpg", "--model", "runs/does-not-exist"], "no such model or run folder: runs/does-not-exist"),
    (["predict", "x.jpg", "--weights", "nowhere.pth"], "weights file not found: nowhere.pth"),
    (["import-weights", "a.pth", "--model", "mobilenet_v2", "--out", "b.safetensors"],
     "import-weights reads .tflite files"),
])
def test_usage_errors_exit_2_without_traceback(capsys, argv, message, tmp_path, monkeypatch, photos):
    monkeypatch.chdir(tmp_path)
    shutil.copy(photos["coffee"], tmp_path / "x.jpg")  # an image that exists, so the model is what fails
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err and out == ""


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "x.jpg", "--top-k", "0"])
    assert exit_info.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_models_json_lists_the_catalog(capsys):
    code, out, _ = run_cli(capsys, "models", "--format", "json")
    rows = {row["name"]: row for row in json.loads(out)}
    assert code == 0
    assert rows["mobilenet_v2"]["params"] == 3_504_872 and rows["mobilenet_v2"]["macs"] == 300_774_272
    assert rows["mobilenet_v2"]["widths"] == [0.35, 0.5, 0.75, 1.0, 1.3, 1.4]
    assert [s["kind"] for s in rows["mobilenet_v2"]["pretrained"]["imagenet"]] == ["url", "tflite"]
    assert [s["kind"] for s in rows["efficientnet_lite0"]["pretrained"]["imagenet"]] == ["package", "url"]
    assert rows["efficientnet_lite1"]["resolution"] == 240
    assert [(s["kind"], s["width_mult"]) for s in rows["mobilenet_v1"]["pretrained"]["imagenet"]] == \
        [("tflite", 0.25), ("tflite", 0.5), ("tflite", 0.75)]


def test_module_and_console_entry_points(photos):
    console_script = Path(sys.executable).parent / "mobiclass"  # installed beside the interpreter
    for command in ([sys.executable, "-m", "mobiclass"], [str(console_script)]):
        done = subprocess.run([*command, "predict", str(photos["coffee"]), "--format", "json", "--top-k", "1"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)[0]["label"] == "espresso"


def test_help_and_models_start_without_torch():
    """Asking for help or the model list must not pay for importing torch (seconds on a small machine)."""
    for argv in (["--help"], ["train", "--help"], ["predict", "--help"], ["models", "--format", "json"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mobiclass", *argv], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
        assert not imported & {"torch", "sklearn", "onnxruntime", "openvino", "matplotlib"}, argv


def test_training_flags_come_from_the_config_fields(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "data", "--optimizer", "adam"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'adam' (choose from 'adamw', 'sgd')" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--optimizer {adamw,sgd} fine-tuning optimizer (default: adamw)" in text
    assert "--augment {none,light,default,strong}" in text and "--epochs EPOCHS fine-tuning epochs (default: 8)" in text


def test_library_errors_get_the_command_lines_advice(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("model: efficientnet_lite0\n")
    code, out, err = run_cli(capsys, "train", tmp_path, "--out", tmp_path / "run")
    assert code == 2 and out == ""
    assert " ".join(err.split()) == (f"error: {tmp_path / 'run'} already exists; pass --overwrite to replace it, or "
                                     f"--resume {tmp_path / 'run'} to continue it")


def test_older_spellings_still_work_with_a_deprecation_message(capsys, photos, tmp_path):
    code, _, err = run_cli(capsys, "predict", photos["coffee"], "--backend", "torch", "--format", "json",
                       "--output", tmp_path / "out.json")
    assert code == 0 and json.loads((tmp_path / "out.json").read_text())[0]["label"] == "espresso"
    assert "warning: --backend is now --engine" in err and "warning: --output is now --out" in err
    code, _, err = run_cli(capsys, "predict", photos["coffee"], "--engine", "fastest", "--format", "json")
    assert code == 0 and "warning: engine 'fastest' is now called 'auto'; the old spelling will be removed" in err
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "no-run", tmp_path)  # the older order: RUN DATA
    assert code == 2 and "the model as a positional argument is now --model" in err
    assert f"no such model or run folder: {tmp_path / 'no-run'}" in " ".join(err.split())
    code, _, err = run_cli(capsys, "export", tmp_path / "no-run")
    assert code == 2 and f"is now --model {tmp_path / 'no-run'}" in " ".join(err.split())
    code, _, err = run_cli(capsys, "train", "--width", "0.5")
    assert code == 2 and "warning: --width is now --width-mult" in err and "training needs data" in err


def test_commands_agree_on_model_weights_and_engine(capsys):
    from mobiclass.cli.parser import build_parser

    parser = build_parser()
    for command in ("predict", "evaluate", "serve"):
        args = parser.parse_args([command, *(["x"] if command != "serve" else []), "--model", "m"])
        assert (args.model, args.weights, args.engine) == ("m", "imagenet", "auto"), command
    args = parser.parse_args(["export", "--model", "m"])
    assert (args.model, args.weights, args.format, args.chip) == ("m", "imagenet", "onnx", "rk3588")
    assert parser.parse_args(["compare", "--model", "a", "b"]).engine == "auto"
    # export's Rockchip chip was --device, which means a CUDA device everywhere else; the old spelling still works.
    args = parser.parse_args(["export", "--model", "m", "--device", "rk3566", "--torchscript"])
    assert (args.chip, args.torchscript) == ("rk3566", True)
    said = " ".join(capsys.readouterr().err.split())
    assert "warning: --device is now --chip" in said
    assert "warning: --torchscript is now --format onnx,torchscript" in said
