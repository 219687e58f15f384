"""What keeps training and prediction fast, as behaviour: a remembered export that spares torch on the next
command, bf16 autocast where the CPU computes it natively, and training photos decoded once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers import QUICK, draw_shapes
from mobiclass.data.dataset import scan_dataset
from mobiclass.data.loaders import Augmentation, ImageDataset, prepared_ahead
from mobiclass.data.transforms import Preprocessing
from mobiclass.train import loops, train


def imported_by(argv: list[str], home) -> set[str]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "mobiclass", *argv], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "MOBICLASS_HOME": str(home)})
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}


def test_a_second_predict_finds_its_export_without_torch(tmp_path, photos):
    """The first command exports the run and remembers it; the next one opens that file directly."""
    run = train(draw_shapes(tmp_path / "shapes", per_class=8), tmp_path / "run", **{**QUICK, "epochs": 1})
    argv = ["predict", str(photos["coffee"]), "--model", str(run.run_dir), "--format", "json"]
    assert "torch" in imported_by(argv, tmp_path / "home")
    assert "torch" not in imported_by(argv, tmp_path / "home")
    (run.run_dir / "model.safetensors").touch()  # a changed run is exported again, never served stale
    time.sleep(0.01)
    assert "torch" in imported_by(argv, tmp_path / "home")


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it_and_it_speeds_the_model_up():
    cpu = torch.device("cpu")
    assert loops.autocast_dtype("auto", cpu, "mobilenet_v2", native_bf16=True) is torch.bfloat16
    assert loops.autocast_dtype("auto", cpu, "mobilenet_v1", native_bf16=True) is torch.bfloat16
    for slower in ("efficientnet_lite0", "mobilenet_v3_large", "mobilenet_v3_small"):  # 5x5 depthwise: fp32
        assert loops.autocast_dtype("auto", cpu, slower, native_bf16=True) is None
    assert loops.autocast_dtype("auto", cpu, "mobilenet_v2", native_bf16=False) is None
    assert loops.autocast_dtype("fp32", cpu, "mobilenet_v2") is None
    assert loops.autocast_dtype("bf16", cpu, "efficientnet_lite0") is torch.bfloat16


def test_preloaded_photos_are_decoded_once_and_give_the_same_samples(tmp_path):
    data = draw_shapes(tmp_path / "shapes", per_class=6, size=400)
    (data / "circle" / "broken.png").write_bytes(b"not a photo")  # unreadable after the scan: skipped, as before
    samples = scan_dataset(data).splits["train"]
    samples.append(type(samples[0])(str(data / "circle" / "broken.png"), 0))
    preprocessing = Preprocessing.for_size(96)
    dataset = ImageDataset(samples, preprocessing, Augmentation.preset("light"), seed=1)
    plain = [dataset[i] for i in range(len(samples))]
    assert dataset.preload()
    side = round(1.5 * preprocessing.resize)  # 1.5 x the resize before the center crop
    assert len(dataset.decoded) == len(samples)
    assert all(image is None or min(image.size) == side for image in dataset.decoded), side
    assert dataset.decoded[-1] is None
    cached = [dataset[i] for i in range(len(samples))]
    assert [label for _, label in cached] == [label for _, label in plain]
    assert all(x.shape == (3, 96, 96) for x, _ in cached)
    # The same crops from a smaller decoded copy: the pixels stay close to those cut from the original.
    assert np.mean([float((a - b).abs().mean()) for (a, _), (b, _) in zip(plain, cached)]) < 0.1
    assert not ImageDataset(samples, Preprocessing.for_size(96)).preload(max_bytes=1000)


def test_photos_travel_as_bytes_and_become_the_same_inputs_in_channels_last(photos):
    """The training feed collates the crops' bytes and normalises the batch at once: the very floats of the
    one-photo path, already in the memory order the convolutions want; a photo in memory is kept cropped."""
    from mobiclass.data.dataset import Sample
    from mobiclass.data.loaders import normalized

    samples = [Sample(str(path), label) for label, path in enumerate(photos.values())]
    preprocessing = Preprocessing.for_size(160, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    one_by_one = torch.stack([ImageDataset(samples, preprocessing)[i][0] for i in range(len(samples))])
    raw = ImageDataset(samples, preprocessing, raw=True)
    assert raw.preload()
    assert [image.size for image in raw.decoded] == [(160, 160)] * 4  # the center crop, nothing more
    pixels = torch.stack([raw[i][0] for i in range(len(samples))])
    assert pixels.dtype == torch.uint8 and pixels.shape == (4, 160, 160, 3)
    batch = normalized(pixels, preprocessing)
    assert torch.equal(batch, one_by_one)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    # Augmented photos stay as decoded (1.5x), cut anew each epoch; the bytes are those of the augmented view.
    augmented = ImageDataset(samples, preprocessing, Augmentation.preset("default"), seed=3, raw=True)
    floats = ImageDataset(samples, preprocessing, Augmentation.preset("default"), seed=3)
    assert torch.equal(normalized(augmented[2][0][None], preprocessing)[0], floats[2][0])


@pytest.mark.parametrize("cache_images", [True, False])
def test_training_with_and_without_the_photo_cache(tmp_path, cache_images):
    run = train(draw_shapes(tmp_path / "shapes", per_class=8), tmp_path / "run",
                **{**QUICK, "epochs": 1, "cache_images": cache_images})
    assert run.metrics["val"]["accuracy"] > 0.3 and [r["epoch"] for r in run.history] == [0, 1]


def test_batches_prepared_ahead_keep_their_order_raise_the_threads_error_and_stop_when_closed():
    import threading

    assert list(prepared_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise OSError("disk gone")
    batches = prepared_ahead(failing())
    assert next(batches) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(batches)

    made = []

    def endless():
        while True:
            made.append(len(made))
            yield made[-1]
    before = threading.active_count()
    batches = prepared_ahead(endless())
    assert [next(batches) for _ in range(3)] == [0, 1, 2]
    batches.close()
    assert threading.active_count() == before and len(made) <= 5  # at most a batch or two made ahead


def test_photos_in_memory_are_fed_from_this_process_and_train_exactly_as_worker_processes_do(tmp_path):
    """On a CPU, photos decoded into memory are cropped on a thread of the training process (worker processes
    would compete with the step for the cores); the epoch's augmentations and order do not change. Run as the
    user runs it: `mobiclass train`, in a process of its own."""
    data = draw_shapes(tmp_path / "shapes", per_class=8)
    options = ["--model", "efficientnet_lite0", "--image-size", "64", "--head-epochs", "20", "--feature-views", "1",
               "--epochs", "1", "--unfreeze", "2", "--batch-size", "16", "--workers", "2", "--augment", "none",
               "--quiet"]
    history = []
    for cache in ("--cache-images", "--no-cache-images"):
        done = subprocess.run([sys.executable, "-m", "mobiclass", "train", str(data), "--out", str(tmp_path / cache),
                               *options, cache], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        lines = (tmp_path / cache / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        history.append(json.loads(lines[-1]))
    assert history[0]["train_loss"] == pytest.approx(history[1]["train_loss"], rel=1e-5)
    assert history[0]["val_accuracy"] == history[1]["val_accuracy"]


FAULTS_PER_REUSE = """
import resource, sys, torch
from mobiclass.train.loops import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.empty(16 * 2**20).fill_(1)  # the first 64 MB are faulted in either way
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(16 * 2**20).fill_(1)  # freed at once, as a step's activations are
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_training_keeps_freed_memory_so_the_next_step_does_not_fault_it_in_again():
    """64 MB freed and asked for again ten times: by default glibc hands it back and each reuse faults in 16,384
    pages; once training has asked it to keep freed memory, fewer do (a few on an idle machine)."""
    def faults(how: str) -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", FAULTS_PER_REUSE, how], capture_output=True, text=True,
                              timeout=120, check=True)
        kept, count = done.stdout.split()
        return kept, int(count)

    assert faults("keep")[0] == "True"
    given_back, kept = faults("default")[1], faults("keep")[1]
    assert given_back >= 10 * 16_384 * 0.9
    assert kept <= given_back * 0.8  # all ten reuses fault by default; kept: 1 to 4 idle here, 6 beside a benchmark
