"""Scale-out: DistributedDataParallel training under torchrun (gloo on CPU) and sharded batch prediction."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import QUICK, draw_shapes
from mobiclass import load_classifier
from mobiclass.runtime import Classifier
from mobiclass.cli import main
from mobiclass.evaluate import summary_metrics

TORCHRUN = Path(sys.executable).with_name("torchrun")
# Two processes see the same images in a different order and batch split, so the runs are not bit-identical; on
# this easy dataset both must land within this much validation accuracy of each other.
ACCURACY_TOLERANCE = 0.1


def test_two_process_gloo_training_matches_one_process(tmp_path):
    data = draw_shapes(tmp_path / "shapes", per_class=30)  # 18 val images: one image is 0.056, within tolerance
    options = {**QUICK, "batch_size": 8}
    del options["progress"]
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    ddp = subprocess.run([str(TORCHRUN), "--nproc-per-node", "2", "-m", "mobiclass", "train", str(data),
                          "--out", str(tmp_path / "ddp"), "--quiet", *flags], capture_output=True, text=True, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("val accuracy") == 1  # rank 0 reports for both processes
    assert main(["train", str(data), "--out", str(tmp_path / "single"), "--quiet", *flags]) == 0

    two, one = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("ddp", "single"))
    assert two["processes"] == 2 and one["processes"] == 1
    assert abs(two["val"]["accuracy"] - one["val"]["accuracy"]) <= ACCURACY_TOLERANCE
    with open(tmp_path / "ddp" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["stage"], r["epoch"]) for r in rows] == [("head", "0"), ("finetune", "1"), ("finetune", "2")]
    # The whole validation split was scored (each process took half and shared its scores): the saved best model,
    # scored here on every validation image, gives exactly the accuracy and loss the two processes recorded.
    val = json.loads((tmp_path / "ddp" / "split.json").read_text())["val"]
    fitted = load_classifier(tmp_path / "ddp", engine="torch")
    # The recorded metrics come from before the temperature was fitted.
    classifier = Classifier(fitted.engine, fitted.info.replace(temperature=1.0))
    probabilities = np.stack([p for _, p in classifier.predict_files([path for path, _ in val])])
    labels = np.array([classifier.classes.index(name) for _, name in val])
    scored = summary_metrics(labels, probabilities)
    assert len(val) == 18 and scored["accuracy"] == two["val"]["accuracy"]
    assert abs(scored["loss"] - two["val"]["loss"]) < 1e-4


def run_predict(capsys, *args) -> str:
    capsys.readouterr()
    code = main(["predict", *args, "--engine", "torch", "--weights", "imagenet", "--model", "efficientnet_lite0"])
    assert code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_prediction_shards_concatenate_to_the_single_process_output(photos, tmp_path, capsys, fmt):
    inputs = [str(p) for p in photos.values()] + [str(photos["chelsea"].parent)]  # 8 images, some twice
    whole = run_predict(capsys, *inputs, "--format", fmt, "--batch-size", "2")
    for i in range(3):  # shards cut at batch boundaries: 2, 2 and 4 images, the same batches as the whole run
        run_predict(capsys, *inputs, "--format", fmt, "--batch-size", "2", "--shard", f"{i}/3",
                    "--out", str(tmp_path / "part-{shard}"))
    parts = sorted(tmp_path.glob("part-*"))
    assert [p.name for p in parts] == ["part-0", "part-1", "part-2"]
    joined = "".join(p.read_text() for p in parts)
    assert joined == whole
    paths = [json.loads(line)["path"] for line in joined.splitlines()] if fmt == "jsonl" else \
        [row["path"] for row in csv.DictReader(joined.splitlines())]
    assert len(paths) == 8 and sorted(paths) == sorted(inputs[:4] * 2)
    assert [len(p.read_text().splitlines()) for p in parts] == ([2, 2, 4] if fmt == "jsonl" else [3, 2, 4])


def test_shard_from_torchrun_environment_and_bad_shards(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run_predict(capsys, *map(str, photos.values()), "--format", "jsonl", "--batch-size", "1", "--shard", "auto",
                "--out", str(tmp_path / "rank-{shard}.jsonl"))
    lines = (tmp_path / "rank-1.jsonl").read_text().splitlines()
    assert [Path(json.loads(line)["path"]).name for line in lines] == ["rocket.jpg", "astronaut.jpg"]
    for bad, message in [("3/3", "--shard takes I/N with 0 <= I < N"), ("a/b", "--shard takes I/N")]:
        assert main(["predict", str(photos["coffee"]), "--shard", bad, "--format", "csv"]) == 2
        assert message in capsys.readouterr().err
    assert main(["predict", str(photos["coffee"]), "--shard", "0/2"]) == 2
    assert "use --format csv or --format jsonl" in capsys.readouterr().err
