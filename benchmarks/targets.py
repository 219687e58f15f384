"""Pick your hardware: for every target whose bundle builds here, `train --target` on flowers-mini (the target's
default recipe), then `export --target` (its precisions tried in order, verified on the vendor's simulator or
runtime against PyTorch on the 100 validation photos); budgets from the model card. A table into the README.

    MOBICLASS_TOOLCHAINS=~/.cache/mobiclass/toolchains .venv/bin/python benchmarks/targets.py [TARGET ...]

Named targets replace their own rows of the README's table and keep the others.
"""
from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, machine, markdown_table, shared_dataset, write_readme_section  # noqa: E402

from mobiclass.export import VerificationError, export  # noqa: E402
from mobiclass.targets import TARGETS  # noqa: E402
from mobiclass.train import train  # noqa: E402

SOURCES = {"laptop": "measured here", "phone": "estimate (Paddle Lite, Snapdragon 855)",
           "raspberry-pi": "estimate (ncnn benchmark, Pi 4)", "rk3588": "estimate (rknn_model_zoo)",
           "rk3566": "estimate (rknn_model_zoo)", "k210": "estimate (Sipeed forum)"}


def main(names: list[str]) -> int:
    flowers = shared_dataset()
    work = Path(tempfile.mkdtemp(prefix="mobiclass-targets-"))
    runs, rows = {}, []
    for name in names or list(TARGETS):
        recipe = TARGETS[name].recipes[0]
        if recipe not in runs:
            started = time.perf_counter()
            runs[recipe] = train(flowers, work / f"{recipe.model}-{recipe.width_mult}-{recipe.image_size}",
                                 target=name, progress=False).run_dir
            print(f"trained {recipe.describe()} in {time.perf_counter() - started:.0f} s", flush=True)
        out = work / f"export-{name}"
        started = time.perf_counter()
        try:
            card = export(runs[recipe], out=out, target=name)
        except VerificationError as exc:
            print(exc, flush=True)
            card = json.loads((out / "model-card.json").read_text())
        entry = card["formats"][card["targets"][name]]
        latency = "unknown" if entry["latency_ms"] is None else f"{entry['latency_ms']:.1f}"
        rows.append([name, f"{recipe.model} {recipe.width_mult:g} @ {recipe.image_size}",
                     " -> ".join(f"{t['precision']} {'ok' if t['verified'] else 'failed'}" for t in entry["tried"]),
                     f"{card['formats']['pytorch']['accuracy']:.2f}", f"{entry['accuracy']:.2f}",
                     f"{entry['top1_agreement']:.2f}", f"{entry['ram_kb']:,.0f}" +
                     (" (compiler)" if entry["ram_source"].startswith("reported") else ""), f"{entry['flash_kb']:,.0f}"
                     + ("" if entry["fits"] else " (over budget)"), latency, SOURCES.get(name, "unknown"),
                     entry.get("simulator", "ONNX Runtime" if name == "laptop" else "LiteRT interpreter"),
                     f"{time.perf_counter() - started:.0f}"])
        print(rows[-1], flush=True)
    if names:  # the other targets keep the rows measured before
        block = re.search(r"<!-- bench:targets -->(.*?)<!-- /bench:targets -->",
                          (REPO / "README.md").read_text(encoding="utf-8"), re.S)
        kept = [line.strip("|").split(" | ") for line in (block[1] if block else "").splitlines()
                if line.startswith("| ") and not line.startswith("| target ")]
        measured = {row[0]: row for row in rows}
        rows = [measured.pop(row[0].strip(), [c.strip() for c in row]) for row in kept] + list(measured.values())
    table = markdown_table(["target", "default recipe", "precisions tried", "PyTorch accuracy", "accuracy there",
                            "top-1 agreement", "RAM kB (estimate or compiler)", "flash kB (file)", "latency ms",
                            "latency from", "verified on", "export s"], rows)
    note = (f"`python benchmarks/targets.py` (flowers-mini: `train --target T` with nothing else, then `export "
            f"--target T`; the 100 val photos through each target's runtime or simulator; {machine()}).")
    write_readme_section("targets", f"{note}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
