"""What a new user hits first: bad input of every kind gets a clear message and loses nothing."""
import json
import os
import re
import subprocess
import sys

import onnx
import pytest
import yaml
from onnx import numpy_helper
from rich.console import Console
from rich.table import Table

from helpers import QUICK, draw_shapes, run_cli
from mobiclass import UsageError, WeightsError, load_classifier
from mobiclass.cli import advice
from mobiclass.cli.commands import print_table
from mobiclass.export import export
from mobiclass.run_folder import next_run_folder
from mobiclass.train import TrainConfig, resume, train



def test_weights_that_are_a_text_file(capsys, tmp_path, photos):
    (tmp_path / "notes.pth").write_text("hello, these are my notes\n")
    code, out, err = run_cli(capsys, "predict", photos["coffee"], "--weights", tmp_path / "notes.pth")
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{tmp_path / 'notes.pth'} is not a PyTorch weights file: it is text" in err


def test_predict_out_that_is_a_folder(capsys, tmp_path, photos):
    code, _, err = run_cli(capsys, "predict", photos["coffee"], "--format", "json", "--out", tmp_path)
    assert code == 2 and f"--out {tmp_path} is a folder; give a file name" in err


def test_predict_without_any_existing_input_fails_before_loading(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", tmp_path / "missing.jpg", "--model", "mobilenet_v9")
    assert code == 2 and err == f"error: no such file or folder: {tmp_path / 'missing.jpg'}"  # the model is not loaded


def test_predict_on_a_folder_without_images(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("no photos here")
    code, out, err = run_cli(capsys, "predict", tmp_path)
    assert code == 1 and out == "" and err.startswith(f"no image found in {tmp_path} (looked for .jpg, .jpeg, .png")


def test_an_empty_class_folder_is_refused_not_dropped(tmp_path):
    data = draw_shapes(tmp_path / "data", per_class=6)
    for split in ("train", "val"):
        (tmp_path / "split" / split).mkdir(parents=True)
    for name in ("circle", "square"):
        (data / name).rename(tmp_path / "split" / "train" / name)
    (tmp_path / "split" / "train" / "triangle").mkdir()  # empty in train ...
    (tmp_path / "split" / "val" / "triangle").mkdir()  # ... and in val
    with pytest.raises(UsageError, match="class\\(es\\) with no usable training image: triangle"):
        train(tmp_path / "split", tmp_path / "run", **QUICK)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, message", [
    ({"dropout": 1.5}, "dropout must be at least 0 and below 1"),
    ({"label_smoothing": 2}, "label_smoothing must be at least 0 and below 1"),
    ({"device": "foo"}, "device must be auto, cpu, mps, cuda or cuda:N, got 'foo'"),
    ({"early_stopping": -1}, "early_stopping and warmup_epochs must be at least 0"),
    ({"warmup_epochs": -1}, "early_stopping and warmup_epochs must be at least 0"),
    ({"momentum": float("nan")}, "momentum must be a finite number, got nan"),
    ({"epochs": True}, "option epochs must be a int, got True"),
])
def test_nonsense_options_are_refused_and_leave_no_folder(tmp_path, options, message):
    with pytest.raises(UsageError, match=message.replace("(", "\\(").replace(")", "\\)")):
        train(tmp_path, tmp_path / "run", **{**QUICK, **options})
    assert not (tmp_path / "run").exists()


def test_yaml_config_with_a_boolean_epoch_count(tmp_path):
    (tmp_path / "train.yaml").write_text(yaml.safe_dump({"epochs": True}))
    with pytest.raises(UsageError, match="option epochs must be a int, got True"):
        TrainConfig.load(tmp_path / "train.yaml")


def test_cuda_on_a_machine_without_it(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    data = draw_shapes(tmp_path / "data", per_class=4)
    code, _, err = run_cli(capsys, "train", data, "--out", tmp_path / "run", "--device", "cuda", "--quiet")
    assert code == 2 and err == ("error: device cuda was asked for, but this PyTorch build sees no CUDA GPU; use "
                                 "--device cpu (or auto)")
    assert not (tmp_path / "run").exists()


def test_a_failed_check_leaves_no_folder_so_the_corrected_command_runs(tmp_path):
    data = draw_shapes(tmp_path / "data", per_class=6, classes=("circle",))
    with pytest.raises(UsageError, match="a classifier needs at least 2 classes"):
        train(data, tmp_path / "run", **QUICK)
    assert not (tmp_path / "run").exists()
    draw_shapes(tmp_path / "data", per_class=6, classes=("square",))
    assert train(data, tmp_path / "run", **{**QUICK, "epochs": 0}).run_dir == tmp_path / "run"


def test_a_diverging_loss_says_what_to_change(tmp_path, capsys):
    data = draw_shapes(tmp_path / "data", per_class=6)
    code, _, err = run_cli(capsys, "train", data, "--out", tmp_path / "run", "--quiet", "--image-size", "64",
                       "--head-epochs", "5", "--head-lr", "1e30", "--epochs", "0", "--workers", "0")
    assert code == 2 and "Traceback" not in err
    assert re.fullmatch(r"error: the training loss became NaN or infinite in head-stage epoch [1-5]; the learning "
                        r"rate is probably too high; lower --lr \(or --head-lr for the head stage\)", err), err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_resume_refuses_a_damaged_state_and_damaged_weights(tmp_path, capsys):
    data = draw_shapes(tmp_path / "data", per_class=6)
    run_dir = train(data, tmp_path / "run", **{**QUICK, "epochs": 1}).run_dir
    state = (run_dir / "state.pt").read_bytes()
    (run_dir / "state.pt").write_bytes(state[:len(state) // 2])
    with pytest.raises(WeightsError, match="state.pt is damaged"):
        resume(run_dir, progress=False)
    (run_dir / "state.pt").write_bytes(state)
    weights = (run_dir / "model.safetensors").read_bytes()
    (run_dir / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    code, _, err = run_cli(capsys, "train", "--resume", run_dir)
    assert code == 2 and f"{run_dir / 'model.safetensors'} is not a valid safetensors file" in err


def test_exported_files_with_damaged_metadata_or_weights(shapes_run, tmp_path):
    data, run = shapes_run
    export(run, out=tmp_path)
    model = onnx.load(str(tmp_path / "model.onnx"))
    for entry in model.metadata_props:
        if entry.key == "mobiclass":
            entry.value = "{not json"
    onnx.save(model, str(tmp_path / "bad-metadata.onnx"))
    with pytest.raises(WeightsError, match="bad-metadata.onnx carries damaged mobiclass metadata \\(not valid JSON"):
        load_classifier(tmp_path / "bad-metadata.onnx")
    model = onnx.load(str(tmp_path / "model.onnx"))
    weight = next(t for t in model.graph.initializer if len(t.dims) == 4)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * float("nan"), weight.name))
    onnx.save(model, str(tmp_path / "nan.onnx"))
    with pytest.raises(WeightsError, match="nan.onnx gives non-finite outputs \\(NaN or infinity\\)"):
        load_classifier(tmp_path / "nan.onnx", engine="onnxruntime").predict([next((data / "circle").iterdir())])


def test_manifests_from_excel_and_paths_outside_their_folder(tmp_path):
    data = draw_shapes(tmp_path / "data", per_class=4, classes=("circle", "square"))
    rows = [f"{p.relative_to(data)},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    (data / "excel.csv").write_bytes(("\ufeffpath,label\n" + "\n".join(rows) + "\n").encode("utf-8"))
    result = train(data / "excel.csv", tmp_path / "run", **{**QUICK, "epochs": 0})
    assert json.loads((result.run_dir / "model.json").read_text())["classes"] == ["circle", "square"]
    (data / "escape.csv").write_text("path,label\n../../../etc/passwd,circle\n" + "\n".join(rows) + "\n")
    with pytest.raises(UsageError, match="line 2: ../../../etc/passwd is outside the manifest's folder") as caught:
        train(data / "escape.csv", tmp_path / "run2", **QUICK)
    assert advice(caught.value) == "; pass --allow-outside if that is intended" and not (tmp_path / "run2").exists()
    outside = tmp_path / "outside.png"
    (data / "circle" / "circle_000.png").rename(outside)
    rows = [r for r in rows if not r.startswith("circle/circle_000")] + [f"{outside},circle"]
    (data / "absolute.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(UsageError, match="is outside the manifest's folder"):
        train(data / "absolute.csv", tmp_path / "run3", **QUICK)
    assert train(data / "absolute.csv", tmp_path / "run3", **{**QUICK, "epochs": 0, "allow_outside": True})


def test_a_huge_file_that_is_no_image_is_refused_from_its_header(tmp_path):
    """1.5 GB of zeros named .jpg: refused without being read into memory (peak memory stays small)."""
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as f:
        f.truncate(1_500_000_000)  # sparse: no disk is used
    # VmHWM: this process's peak resident memory (ru_maxrss would count the parent's, inherited through fork)
    script = ("import sys; from mobiclass.data.dataset import _check_file; from pathlib import Path; "
              "print(_check_file(Path(sys.argv[1]))[2]); "
              "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')))")
    done = subprocess.run([sys.executable, "-c", script, str(huge)], capture_output=True, text=True, timeout=120)
    error, peak_kb = done.stdout.splitlines()
    assert error == "not an image, or a format Pillow cannot read" and int(peak_kb) < 500_000


def test_train_numbers_its_default_run_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = draw_shapes(tmp_path / "data", per_class=4, classes=("circle", "square"))
    assert next_run_folder() == tmp_path.joinpath("runs", "train").relative_to(tmp_path)
    first = train(data, **{**QUICK, "epochs": 0}).run_dir
    second = train(data, **{**QUICK, "epochs": 0}).run_dir
    assert (str(first), str(second)) == (os.path.join("runs", "train"), os.path.join("runs", "train2"))


def test_tables_never_cut_the_column_that_names_a_row(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and all(name in out for name in ("efficientnet_lite0", "efficientnet_lite2",
                                                      "mobilenet_v3_large", "mobilenet_v3_small"))
    table = Table("model", "a long description", "another long column", "and one more")
    table.add_row("a_model_with_a_rather_long_name_x", "text " * 12, "more " * 12, "end " * 12)
    console = Console(width=80, force_terminal=True, record=True)
    print_table(table, console=console)
    assert "a_model_with_a_rather_long_name_x" in console.export_text()


def test_progress_is_reported_in_a_pipe(tmp_path):
    """Not a terminal: a plain line instead of a live bar (which would show nothing in a log)."""
    data = draw_shapes(tmp_path / "data", per_class=12)
    done = subprocess.run([sys.executable, "-m", "mobiclass", "predict", str(data), "--batch-size", "4",
                           "--format", "json", "--engine", "torch"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and len(json.loads(done.stdout)) == 36
    assert "classifying: 36/36" in done.stderr
