"""How soon a usable model exists: `mobiclass train` on flowers-mini with the default recipe, as a new user runs it
(a fresh cache each time: no cached features), timed from the command's start to the first provisional model in the
run folder and to `mobiclass predict` answering with it, and to the end of training; with the provisional and the
final model's validation accuracy.

    python benchmarks/first_model.py [--runs 3]

Writes the table into the README (bench:first_model). Run it on an idle machine: it measures time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

MOBICLASS = str(Path(sys.executable).with_name("mobiclass"))


def one_run(work: Path) -> dict:
    data, run = shared_dataset("flowers-mini"), work / "run"
    env = {**os.environ, "MOBICLASS_HOME": str(work / "cache")}
    start = time.perf_counter()
    training = subprocess.Popen([MOBICLASS, "train", str(data), "--out", str(run), "--quiet"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    manifest = run / "model.json"
    while not (manifest.is_file() and json.loads(manifest.read_text()).get("provisional")):
        if training.poll() is not None:
            raise SystemExit(f"training ended before a provisional model appeared: {training.stderr.read()}")
        time.sleep(0.05)
    provisional_s = time.perf_counter() - start
    first = json.loads(manifest.read_text())
    photo = next((data / "val" / "daisy").iterdir())
    answered = subprocess.run([MOBICLASS, "predict", str(photo), "--model", str(run), "--format", "json"], env=env,
                              capture_output=True, text=True)
    predicted_s = time.perf_counter() - start
    if answered.returncode != 0 or "provisional" not in answered.stderr:
        raise SystemExit(f"predict did not answer with the provisional model: {answered.stderr}")
    training.wait()
    total_s = time.perf_counter() - start
    final = json.loads(manifest.read_text())
    return {"provisional_s": provisional_s, "predicted_s": predicted_s, "total_s": total_s,
            "first_accuracy": first["metrics"]["accuracy"], "first_stage": first["stage"],
            "final_accuracy": final["metrics"]["accuracy"], "final_provisional": final["provisional"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows, results = [], []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="mobiclass-first-") as work:
            result = one_run(Path(work))
        results.append(result)
        rows.append([number + 1, f"{result['provisional_s']:.1f}", f"{result['predicted_s']:.1f}",
                     f"{result['first_accuracy']:.2f} ({result['first_stage']})", f"{result['total_s']:.0f}",
                     f"{result['final_accuracy']:.2f}"])
        print(rows[-1], flush=True)
    rows.append(["median", *(f"{statistics.median(r[k] for r in results):.1f}" for k in ("provisional_s",
                                                                                         "predicted_s")),
                 "", f"{statistics.median(r['total_s'] for r in results):.0f}", ""])
    write_readme_section("first_model", "\n".join([
        f"Measured with `python benchmarks/first_model.py --runs {args.runs}` on {machine()}, a fresh cache each run "
        f"(no cached features), nothing else running.", "",
        markdown_table(["run", "s to the provisional model", "s to predict's answer with it",
                        "its val accuracy (stage)", "s to the end of training", "final val accuracy"], rows)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
