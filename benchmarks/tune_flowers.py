"""What a 20-trial Optuna study gains over the default recipe on flowers-mini (EfficientNet-Lite0), and its cost.

Both run in this process on the same split (flowers-mini's own val/ folder): the default `train` recipe once, then
`tune` with the default search space, TPE sampler and median pruner. The study's figure is the best trial's own
validation score, so it is optimistic (the trials were chosen on that same split); the README says so. The
table goes into README.md.

    .venv/bin/python benchmarks/tune_flowers.py [--trials 20] [--model efficientnet_lite0]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

from mobiclass.train import train  # noqa: E402
from mobiclass.train.config import TrainConfig  # noqa: E402
from mobiclass.tune import DEFAULT_SPACE, tune  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--model", default="efficientnet_lite0")
    args = parser.parse_args()
    data = shared_dataset()
    work = Path(tempfile.mkdtemp(prefix="mobiclass-tune-"))
    try:
        start = time.perf_counter()
        default = train(data, work / "default", model=args.model, progress=False).metrics["val"]
        default_seconds = time.perf_counter() - start

        start = time.perf_counter()
        result = tune(data, work / "study", args.trials, base=TrainConfig(model=args.model))
        tune_seconds = time.perf_counter() - start
        best_run = next((work / "study" / "trials").glob("*"))
        best = json.loads((best_run / "metrics.json").read_text())["val"]
        params = {k: v for k, v in result.best_config.to_dict().items() if k in DEFAULT_SPACE}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = [["default recipe", f"{default['accuracy']:.3f}", f"{default['macro_f1']:.3f}",
             f"{default_seconds:.0f} s", "1 run"],
            [f"best of {result.trials} trials", f"{best['accuracy']:.3f}", f"{best['macro_f1']:.3f}",
             f"{tune_seconds:.0f} s", f"{result.pruned} pruned"]]
    table = markdown_table(["flowers-mini/val", "accuracy", "macro-F1", "time", "trials"], rows)
    chosen = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    note = (f"`python benchmarks/tune_flowers.py` ({args.model}, default search space, TPE, median pruner; "
            f"{machine()}). Best trial: {chosen}.")
    write_readme_section("tune", f"{note}\n\n{table}")
    print(note)
    print(table)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    main()
