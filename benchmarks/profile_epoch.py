"""Where a training epoch's time goes: `train` on flowers-mini with the default recipe for one fine-tuning epoch,
under torch.profiler (CPU), the operators sorted by total time. Run it twice with the same MOBICLASS_HOME to leave
out the head stage's feature extraction (cached by the first run).

    python benchmarks/profile_epoch.py [--rows 25]

Prints the table; it writes nothing into the README (issue 29: profile first, then speed the pipeline up).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, shared_dataset  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    from torch.profiler import ProfilerActivity, profile

    from mobiclass.train import train

    with tempfile.TemporaryDirectory(prefix="mobiclass-profile-") as work, \
            profile(activities=[ProfilerActivity.CPU]) as profiled:
        result = train(shared_dataset("flowers-mini"), Path(work) / "run", epochs=1, progress=False)
    print(profiled.key_averages().table(sort_by="cpu_time_total", row_limit=args.rows))
    print(f"{machine()}: fine-tuning {result.metrics['finetune_images_per_s']:.1f} photos/s, "
          f"{result.metrics['train_seconds']:.1f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
