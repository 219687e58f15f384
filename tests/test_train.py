"""Training: real short runs on synthetic shapes, run-folder outputs, resume after a kill, configs, errors."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from helpers import MOBICLASS, QUICK, draw_shapes
from mobiclass import UsageError, load_classifier
from mobiclass.cli import advice
from mobiclass.evaluate.metrics import fit_temperature
from mobiclass.train import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short real run shared by the output tests."""
    data = draw_shapes(tmp_path_factory.mktemp("data") / "shapes", per_class=20)
    run = tmp_path_factory.mktemp("runs") / "shapes"
    return data, train(data, run, **QUICK)


def test_training_beats_chance_by_a_clear_margin(trained):
    _, result = trained
    assert result.metrics["val"]["accuracy"] >= 0.75  # chance is 1/3
    assert [row["stage"] for row in result.history] == ["head", "finetune", "finetune"]


def test_run_folder_contents(trained):
    data, result = trained
    run = result.run_dir
    assert sorted(p.name for p in run.iterdir()) == [
        "bad_files.csv", "config.yaml", "data_report.json", "last.safetensors", "metrics.csv", "metrics.json",
        "metrics.jsonl", "model.json", "model.safetensors", "split.json", "state.pt"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["val"]) == {"accuracy", "macro_f1", "loss"} and metrics == result.metrics
    manifest = json.loads((run / "model.json").read_text())
    assert manifest["architecture"] == "efficientnet_lite0" and manifest["classes"] == ["circle", "square", "triangle"]
    # The default crop keeps the whole central square of each photo: no resize margin.
    preprocessing = manifest["preprocessing"]
    assert (preprocessing["size"], preprocessing["resize"], manifest["padding"]) == (64, 64, "tf")
    assert manifest["training"]["epochs"] == 2 and set(manifest["versions"]) == {"mobiclass", "torch", "python"}
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1, 2]
    assert (run / "metrics.csv").read_text().splitlines()[0].startswith("epoch,stage,train_loss,train_accuracy")
    assert sorted(json.loads((run / "split.json").read_text())) == ["train", "val"]
    assert load_file(str(run / "last.safetensors")).keys() == load_file(str(run / "model.safetensors")).keys()


def test_trained_run_predicts_with_its_own_classes(trained):
    """The saved model, loaded back on the default engine, scores its validation split as training recorded."""
    data, result = trained
    classifier = load_classifier(result.run_dir)
    assert classifier.classes == ["circle", "square", "triangle"]
    val = json.loads((result.run_dir / "split.json").read_text())["val"]
    predictions = classifier.predict([path for path, _ in val])
    assert [p["path"] for p in predictions] == [path for path, _ in val]
    accuracy = sum(p["label"] == label for p, (_, label) in zip(predictions, val)) / len(val)
    assert accuracy == result.metrics["val"]["accuracy"]


def test_fine_tuning_keeps_pretrained_batchnorm_statistics_but_scratch_learns_them(trained, tmp_path):
    data, result = trained
    pretrained = load_classifier("efficientnet_lite0", engine="torch").module.state_dict()
    last = load_file(str(result.run_dir / "last.safetensors"))  # after 2 epochs fine-tuning the top 2 blocks
    assert not torch.equal(last["_conv_head.weight"], pretrained["_conv_head.weight"])
    assert torch.equal(last["_bn1.running_mean"], pretrained["_bn1.running_mean"])
    scratch = train(data, tmp_path / "scratch", **{**QUICK, "weights": "none", "epochs": 1, "head_epochs": 1})
    learnt = load_file(str(scratch.run_dir / "last.safetensors"))["_bn1.running_mean"]
    assert learnt.abs().sum() > 0  # a new BatchNorm starts at mean 0; from scratch it is never frozen


def test_same_config_gives_the_same_metrics(trained, tmp_path):
    data, result = trained
    again = train(data, tmp_path / "again", **QUICK)
    assert again.history == [{**row, "seconds": again.history[i]["seconds"],
                              "images_per_s": again.history[i]["images_per_s"]} for i, row in enumerate(result.history)]


def test_existing_run_is_never_overwritten_silently(trained, tmp_path):
    data, result = trained
    with pytest.raises(UsageError, match="already exists") as caught:
        train(data, result.run_dir, **QUICK)
    assert advice(caught.value) == f"; pass --overwrite to replace it, or --resume {result.run_dir} to continue it"
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("do not delete")
    with pytest.raises(UsageError, match="exists and is not a run folder"):
        train(data, tmp_path / "precious", overwrite=True, **QUICK)
    assert (tmp_path / "precious" / "thesis.txt").exists()


def test_config_file_round_trip(trained, tmp_path):
    data, _ = trained
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"model": "efficientnet_lite0", "epochs": 5, "image_size": 64, "lr": 0.002,
                                      "label_smoothing": 0.05}))
    options = {k: v for k, v in QUICK.items() if k not in ("epochs", "progress")}
    options["epochs"] = 1  # the command line wins over the file
    result = train(data, tmp_path / "run", config=config, progress=False, **options)
    effective = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert effective["epochs"] == 1 and effective["lr"] == 0.002 and effective["label_smoothing"] == 0.05
    assert TrainConfig.from_dict(effective) == TrainConfig.load(result.run_dir / "config.yaml")
    with pytest.raises(UsageError, match="unknown training option\\(s\\): learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(UsageError, match="option epochs must be a int, got 'many'"):
        TrainConfig.from_dict({"epochs": "many"})


def test_imbalanced_classes_get_balanced_loss(tmp_path):
    data = draw_shapes(tmp_path / "data", per_class=4, classes=("circle", "square"))
    draw_shapes(tmp_path / "more", per_class=24, classes=("triangle",), seed=3)
    (tmp_path / "more" / "triangle").rename(data / "triangle")
    result = train(data, tmp_path / "run", **{**QUICK, "epochs": 0})
    assert result.metrics["class_balance"] == "weights"
    assert json.loads((result.run_dir / "data_report.json").read_text())["counts"]["train"]["triangle"] == 19


def test_training_errors_are_clear(tmp_path):
    with pytest.raises(UsageError, match="data not found"):
        train(tmp_path / "nothing", tmp_path / "run", **QUICK)
    with pytest.raises(UsageError, match="training needs data") as caught:
        train(None, None)
    assert advice(caught.value) == "; give DATA: a folder with one sub-folder of photos per class"
    with pytest.raises(UsageError, match="unfreeze must be 'auto', 'all', 'none' or a number of blocks"):
        TrainConfig(unfreeze="most")
    with pytest.raises(UsageError, match="crop must be between 0.5 and 1"):
        TrainConfig(crop=0.3)


def _train_command(data, run, epochs, *extra):
    options = [f"--{k.replace('_', '-')}={v}" for k, v in QUICK.items() if k not in ("progress", "epochs")]
    return [sys.executable, "-m", "mobiclass", "train", str(data), "--out", str(run), f"--epochs={epochs}", "--quiet",
            *options, *extra]


def test_resume_after_a_kill_reaches_the_same_result(tmp_path):
    data = draw_shapes(tmp_path / "data", per_class=20)
    epochs = 5
    subprocess.run(_train_command(data, tmp_path / "whole", epochs), check=True, capture_output=True, timeout=600)

    process = subprocess.Popen(_train_command(data, tmp_path / "killed", epochs), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "state.pt"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill it as soon as the first fine-tuning epoch is checkpointed
        if state.exists() and torch.load(state, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted_at = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= interrupted_at < epochs, "the run finished before it could be interrupted"
    # The interrupted run's best model so far is usable, marked provisional, and calibrated on its epoch's answers.
    manifest = json.loads((tmp_path / "killed" / "model.json").read_text())
    assert manifest["provisional"] is True and manifest["stage"] in ("head", "finetune")
    provisional = load_classifier(tmp_path / "killed", engine="torch")
    val = json.loads((tmp_path / "killed" / "split.json").read_text())["val"]
    classes = provisional.classes
    logits = provisional.engine.run(np.stack([provisional.prepare(p) for p, _ in val]))
    assert provisional.temperature == pytest.approx(
        fit_temperature(logits, np.array([classes.index(label) for _, label in val])), rel=1e-3)
    home = {**os.environ, "MOBICLASS_HOME": str(tmp_path / "home")}
    predicted = subprocess.run([MOBICLASS, "predict", str(data / "circle"), "--model", str(tmp_path / "killed"),
                                "--format", "json"], capture_output=True, text=True, timeout=300, env=home)
    assert predicted.returncode == 0 and len(json.loads(predicted.stdout)) == 20, predicted.stderr
    assert f"note: {tmp_path / 'killed'} is still training (or its training was interrupted): using its best " \
           f"model so far, provisional" in " ".join(predicted.stderr.split())
    # It changes each epoch: run on PyTorch, not exported to ONNX for a faster engine (seconds, stale soon).
    assert not list((tmp_path / "home").glob("onnx/*.onnx"))

    # Resumed as the user does (a process of its own, like the whole run): fp32 validation then sums in the same
    # order, so even the loss agrees to the last bit.
    subprocess.run([sys.executable, "-m", "mobiclass", "train", "--resume", str(tmp_path / "killed"), "--quiet"],
                   check=True, capture_output=True, timeout=600)
    resumed = json.loads((tmp_path / "killed" / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert resumed["val"] == whole["val"] and resumed["best_epoch"] == whole["best_epoch"]
    for name in ("model.safetensors", "last.safetensors"):
        ours, theirs = load_file(str(tmp_path / "killed" / name)), load_file(str(tmp_path / "whole" / name))
        assert all(torch.equal(ours[k], theirs[k]) for k in theirs), name
    assert json.loads((tmp_path / "killed" / "model.json").read_text())["provisional"] is False  # the final model
    final = subprocess.run([MOBICLASS, "predict", str(data / "circle"), "--model", str(tmp_path / "killed")],
                           capture_output=True, text=True, timeout=300, env=home)
    assert final.returncode == 0 and "provisional" not in final.stderr, final.stderr
    assert len(list((tmp_path / "home").glob("onnx/*.onnx"))) == 1  # the final model: exported once, then reused


def test_cli_train_then_predict(tmp_path, capsys):
    from mobiclass.cli import main

    data = draw_shapes(tmp_path / "data", per_class=10)
    options = [f"--{k.replace('_', '-')}={v}" for k, v in QUICK.items() if k not in ("progress", "epochs")]
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--quiet", "--epochs=1", *options]) == 0
    out = capsys.readouterr().out
    assert "val accuracy" in out and f"--model {tmp_path / 'run'}" in out
    assert main(["predict", str(data / "circle"), "--model", str(tmp_path / "run"), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed) == 10 and printed == load_classifier(tmp_path / "run").predict([data / "circle"])


def test_every_stage_puts_weight_decay_on_weights_only_and_the_head_stage_decays_its_learning_rate():
    from mobiclass.models import create_model
    from mobiclass.train.loops import make_head_optimizer, make_optimizer

    model = create_model("mobilenet_v2", num_classes=3)
    config = TrainConfig(weight_decay=0.05, head_lr=0.01, lr=0.001, backbone_lr_mult=0.1)
    head, steps = model.head_modules(), 10
    optimizer, scheduler = make_head_optimizer(head, config, steps)
    fine_tuning = make_optimizer(model, model.backbone_blocks()[-2:], config)
    for chosen, modules in ((optimizer, [head]), (fine_tuning, [head, *model.backbone_blocks()[-2:]])):
        decay = {id(p): g["weight_decay"] for g in chosen.param_groups for p in g["params"]}
        named = [(n, p) for m in modules for n, p in m.named_parameters()]
        assert {n: decay[id(p)] for n, p in named} == {n: 0.05 if p.ndim > 1 else 0.0 for n, p in named}
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.01]  # the weight, then the bias
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine down to nothing at the end


def test_seams_replace_the_optimizer_a_batch_transform_and_the_loss_without_patching(tmp_path):
    from mobiclass.train import Seams
    from mobiclass.train.loops import loss_function, make_optimizer

    data = draw_shapes(tmp_path / "data", per_class=8)
    calls = {"optimizer": [], "transform": 0, "loss": 0}

    def optimizer(model, trainable, config):
        calls["optimizer"].append(len(trainable))
        return make_optimizer(model, trainable, config)

    def mixed(images, labels):  # class probabilities instead of labels, as mixup gives
        calls["transform"] += 1
        return images, torch.nn.functional.one_hot(labels, 3).float()

    def loss(config, class_weights):
        def counted(logits, labels):
            calls["loss"] += 1
            return loss_function(config, class_weights)(logits, labels)
        return counted

    result = train(data, tmp_path / "run", **{**QUICK, "epochs": 2, "unfreeze": "2"},
                   seams=Seams(optimizer=optimizer, batch_transform=mixed, loss=loss))
    steps = sum(1 for r in result.history if r["stage"] == "finetune") * (len(json.loads(
        (tmp_path / "run" / "split.json").read_text())["train"]) // QUICK["batch_size"])
    assert calls["optimizer"] == [2] and calls["transform"] == steps > 0
    assert calls["loss"] > steps  # the head stage's batches too: one loss for both stages
    with pytest.raises(UsageError, match="a batch transform cannot be used with a teacher"):
        train(data, tmp_path / "taught", **QUICK, teacher=str(tmp_path / "run"), seams=Seams(batch_transform=mixed))
    assert not (tmp_path / "taught").exists()
