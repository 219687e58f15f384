"""Hyperparameter search: a small real study on synthetic shapes, resumed, pruned, interrupted; best.yaml trains."""
from __future__ import annotations

import contextlib
import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

from helpers import draw_shapes
from mobiclass.cli import main
from mobiclass.errors import UsageError
from mobiclass.train.config import TrainConfig
from mobiclass.tune import tune

BASE = TrainConfig(image_size=64, head_epochs=10, feature_views=0, epochs=2, batch_size=16, workers=0)
# head_lr spans four decades so some trials are clearly worse than the median: the pruner has work to do.
SPACE = {"head_lr": {"low": 1e-5, "high": 1e-1, "log": True}, "unfreeze": ["none", "2"],
         "lr": {"low": 1e-4, "high": 1e-2, "log": True}}


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory):
    return draw_shapes(tmp_path_factory.mktemp("tune") / "shapes", per_class=16)


def read_trials(folder):
    with open(folder / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_study_runs_resumes_prunes_and_its_best_config_trains(shapes_data, tmp_path, capsys):
    out = tmp_path / "study"
    first = tune(shapes_data, out, 6, base=BASE, space=SPACE, sampler="random", progress=False)
    assert first.trials == 6 and first.pruned >= 1 and not first.interrupted
    rows = read_trials(out)
    assert [int(r["number"]) for r in rows] == list(range(6))
    assert {r["state"] for r in rows} <= {"COMPLETE", "PRUNED"} and "PRUNED" in {r["state"] for r in rows}
    assert list(rows[0]) == ["number", "state", "val_macro_f1", "seconds", "epochs_run", "pruned_at_epoch",
                             "head_lr", "unfreeze", "lr"]
    assert {p.name for p in out.glob("*.png")} == {"history.png", "importances.png", "parallel.png"}
    assert len(list((out / "trials").iterdir())) == 1  # only the best trial's run folder is kept

    second = tune(shapes_data, out, 2, base=BASE, space=SPACE, sampler="random", progress=False)
    assert second.trials == 8 and len(read_trials(out)) == 8  # the same study, two trials more

    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["model"] == "efficientnet_lite0" and best["image_size"] == 64 and best["epochs"] == 2
    assert best["head_lr"] == pytest.approx(second.best_config.head_lr)
    assert set(best) == set(TrainConfig().to_dict())
    capsys.readouterr()
    code = main(["train", str(shapes_data), "--config", str(out / "best.yaml"), "--out", str(tmp_path / "best-run"),
                 "--quiet"])
    assert code == 0 and (tmp_path / "best-run" / "model.safetensors").is_file()
    assert "val accuracy" in capsys.readouterr().out


def test_grid_search_tries_every_combination_once(shapes_data, tmp_path):
    grid = {"head_lr": [1e-3, 1e-2], "unfreeze": ["none"], "label_smoothing": [0.0, 0.1]}
    result = tune(shapes_data, tmp_path / "grid", 10, base=BASE, space=grid, sampler="grid", pruner="none",
                  progress=False)
    assert result.trials == 4  # the grid is exhausted before 10 trials
    tried = {(float(r["head_lr"]), float(r["label_smoothing"])) for r in read_trials(tmp_path / "grid")}
    assert tried == {(1e-3, 0.0), (1e-3, 0.1), (1e-2, 0.0), (1e-2, 0.1)}


@pytest.mark.parametrize("space, sampler, message", [
    ({"learning_rate": [0.1]}, "tpe", "unknown option(s) in the search space: learning_rate"),
    ({"lr": {"low": 1e-4}}, "tpe", "search space option lr: a range needs low and high"),
    ({"lr": {"low": 1e-4, "high": 1e-2}}, "grid", "grid search needs an explicit grid"),
])
def test_bad_search_spaces_are_explained(shapes_data, tmp_path, space, sampler, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tune(shapes_data, tmp_path / "bad", 1, base=BASE, space=space, sampler=sampler, progress=False)


def test_a_study_folder_refuses_another_model(shapes_data, tmp_path):
    tune(shapes_data, tmp_path / "s", 1, base=BASE, space={"unfreeze": ["none"]}, progress=False)
    other = TrainConfig(**{**BASE.to_dict(), "model": "mobilenet_v3_small"})
    with pytest.raises(UsageError, match="run with other settings .*model 'efficientnet_lite0' -> "
                                         "'mobilenet_v3_small'"):
        tune(shapes_data, tmp_path / "s", 1, base=other, space={"unfreeze": ["none"]}, progress=False)


def completed_trials(database) -> int:
    """Trials finished in a study being written, read without writing (opening it with Optuna would create its
    tables, racing the tool that is creating them)."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            return connection.execute("SELECT count(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:  # not made yet, or mid-creation
        return 0


def test_ctrl_c_stops_cleanly_with_the_best_so_far_saved(shapes_data, tmp_path):
    out = tmp_path / "interrupted"
    command = [sys.executable, "-m", "mobiclass", "tune", str(shapes_data), "--out", str(out), "--trials", "500",
               "--sampler", "random", "--image-size", "64", "--head-epochs", "10", "--feature-views", "0",
               "--epochs", "2", "--batch-size", "16", "--workers", "0", "--unfreeze", "none"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if completed_trials(out / "study.db") >= 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted" in err
    completed = [r for r in read_trials(out) if r["state"] == "COMPLETE"]
    assert len(completed) >= 2 and (out / "best.yaml").is_file()
    assert os.path.getsize(out / "history.png") > 0


def test_a_search_for_a_target_prunes_what_cannot_fit_and_writes_the_pareto_front(shapes_data, tmp_path):
    """On the K210, MobileNetV2 at 224 px cannot fit (its largest layer needs 1,505 kB of 760): that candidate is
    pruned untrained; the ones that fit train and form the front; best.yaml keeps the target."""
    base = TrainConfig.from_dict({**BASE.to_dict(), "unfreeze": "none", "target": "k210", "model": "mobilenet_v2"})
    out = tmp_path / "k210"
    result = tune(shapes_data, out, 3, base=base, space={"image_size": [64, 96, 224]}, sampler="grid",
                  pruner="none", progress=False)
    rows = {int(r["image_size"]): r for r in read_trials(out)}
    assert result.trials == 3 and rows[224]["state"] == "PRUNED" and rows[224]["epochs_run"] == ""
    assert {rows[64]["state"], rows[96]["state"]} == {"COMPLETE"}
    with open(out / "pareto.csv", newline="") as f:
        front = list(csv.DictReader(f))
    assert front and {int(r["image_size"]) for r in front} <= {64, 96}
    assert all(0 < float(r["ram_kb"]) <= 760 and float(r["latency_ms"]) > 0 for r in front)
    assert yaml.safe_load((out / "best.yaml").read_text())["target"] == "k210"
    assert (out / "pareto.png").is_file()
    with pytest.raises(UsageError, match="--max-latency needs a --target whose latency is estimated"):
        tune(shapes_data, tmp_path / "x", 1, base=BASE, max_latency=10, progress=False)


OPEN_WHEN_TOLD = """
import sys, time
from pathlib import Path
from mobiclass.tune import _open_study
import optuna
folder, rounds = Path(sys.argv[1]), int(sys.argv[2])
(folder / f"ready-{sys.argv[3]}").touch()
for round_ in range(rounds):
    while not (folder / f"go{round_}").exists():
        time.sleep(0.001)
    _open_study(folder / f"study{round_}.db", optuna.samplers.RandomSampler(), optuna.pruners.NopPruner())
"""


def test_processes_opening_one_new_study_together_all_get_it(tmp_path):
    """Tuning in parallel on one study: its tables are created once, whoever comes first (without the retry, 4
    processes at once failed on "already exists" in 4 of 40 openings here)."""
    rounds = 8
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_WHEN_TOLD, str(tmp_path), str(rounds), str(n)],
                                  stderr=subprocess.PIPE, text=True) for n in range(4)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    for round_ in range(rounds):
        (tmp_path / f"go{round_}").touch()
        time.sleep(0.5)
    errors = [p.communicate(timeout=120)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
