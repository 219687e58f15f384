"""The model card (``OUT/model-card.json``): what each export wrote and how it verified, with its budget on the
target it is for. Exports accumulate: each replaces the entries of its own formats and keeps the others whose
files are still there."""
from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write_text
from ..runtime import Classifier
from ..targets import Recipe, Target, estimate, get_target
from ..targets.budget import RAM_SOURCE

CARD = "model-card.json"
# the target a format is for when none is named: its budget goes into the card entry
DEFAULT_TARGETS = {"onnx": "laptop", "onnx-int8": "laptop", "tflite": "phone", "tflite-int8": "phone",
                   "ncnn": "raspberry-pi", "maixcam": "maixcam", "k210": "k210", "tflm": "stm32h7",
                   "ethos-u": "ethos-u55", "web": "browser"}
ARENA_SOURCE = ("measured: the tensor arena TensorFlow Lite Micro allocated for the model (its recording allocator, "
                "on this 64-bit machine: a 32-bit MCU's bookkeeping is smaller)")
RKNN_TARGETS = {"rk3588": "rk3588", "rk3566": "rk3566", "rk3568": "rk3566"}


def target_of(name: str, entry: dict) -> Target | None:
    """The target a card entry's budget is for: the one it was exported for, else its format's usual one."""
    if "target" in entry:
        return get_target(entry["target"])
    known = RKNN_TARGETS.get(entry.get("device", "")) if name == "rknn" else DEFAULT_TARGETS.get(name)
    return get_target(known) if known else None


def add_budget(entry: dict, target: Target, classifier: Classifier) -> None:
    """The entry's RAM, flash and latency on `target`: flash is the model file as written; RAM is estimated; latency
    is measured here for the laptop, else scaled from the target's published figure (or unknown)."""
    pre = classifier.preprocessing
    budget = estimate(target, Recipe(classifier.architecture, classifier.width_mult, pre.size),
                      len(classifier.classes), entry.get("precision", "fp32"))
    entry.update({"target": target.name, "ram_kb": round(budget.ram_kb, 1),
                  "ram_source": RAM_SOURCE,
                  "flash_kb": round(entry["size_mb"] * 1000, 1), "flash_source": "measured: the model file(s)"})
    entry["fits"] = entry["flash_kb"] <= target.flash_kb and budget.ram_kb <= target.ram_kb
    if entry["flash_kb"] > target.flash_kb:
        entry["fit_note"] = (f"the model file takes {entry['flash_kb']:,.0f} kB; {target.name} has {target.flash_kb:,} "
                             f"kB ({target.memory_note})")
    reported = entry.get("compiler_memory", {})
    if "TOTAL" in reported:  # the compiler's own figures replace the estimate: the model and its working memory
        working = sum(reported.get(k, 0) for k in ("input", "output", "data"))
        entry.update(ram_kb=round(working / 1000, 1), total_kb=round(reported["TOTAL"] / 1000, 1),
                     ram_source="reported by the compiler: working memory (.input + .output + .data)")
        if reported["TOTAL"] / 1000 > target.flash_kb:
            entry["fits"] = False
            entry["fit_note"] = (f"the compiler reports {reported['TOTAL'] / 1e6:.2f} MB in all (model "
                                 f"{reported.get('MODEL', 0) / 1e6:.2f} MB, working memory {working / 1e6:.2f} MB); "
                                 f"{target.name} has about {target.flash_kb / 1000:g} MB for a model"
                                 + (f". {target.memory_hint}" if target.memory_hint else ""))
    if "arena" in reported:
        entry.update(ram_kb=round(reported["arena"] / 1000, 1), ram_source=ARENA_SOURCE)
    if "vela_sram_kib" in reported:  # the NPU compiler's own figures, for its accelerator
        entry.update(ram_kb=round(reported["vela_sram_kib"] * 1.024, 1),
                     flash_kb=round(reported["vela_flash_kib"] * 1.024, 1),
                     ram_source=f"vela's estimate: SRAM used on {reported['vela_accelerator']}",
                     flash_source=f"vela's estimate: flash used on {reported['vela_accelerator']}")
    if "arena" in reported or "vela_sram_kib" in reported:
        entry["fits"] = entry["ram_kb"] <= target.ram_kb and entry["flash_kb"] <= target.flash_kb
        if entry["ram_kb"] > target.ram_kb:
            entry["fit_note"] = (f"it needs {entry['ram_kb']:,.1f} kB of RAM; {target.name} has {target.ram_kb:,} kB "
                                 f"({target.memory_note})")
    if "vela_latency_ms" in reported:
        entry.update(latency_ms=round(reported["vela_latency_ms"], 2),
                     latency_source=f"vela's estimate for {reported['vela_accelerator']} "
                                    f"({reported['vela_system']}, {reported['vela_npu_operators']} operators on the "
                                    f"NPU, {reported['vela_cpu_operators']} on the CPU)")
    elif "browser_images_per_second" in entry:
        entry.update(latency_ms=round(1000 / entry["browser_images_per_second"], 2),
                     latency_source="measured here: the page in headless Chromium, one photo after another, decoding "
                                    "and preprocessing included (this machine)")
    elif target.name == "laptop" and "latency_b1_ms" in entry:
        entry.update(latency_ms=round(entry["latency_b1_ms"], 2),
                     latency_source="measured here: ONNX Runtime, batch 1 (this machine)")
    else:
        entry.update(latency_ms=None if budget.latency_ms is None else round(budget.latency_ms, 2),
                     latency_source=budget.latency_source)
    entry["ram_how"] = ram_how(entry["ram_source"])


def ram_how(source: str) -> str:
    """The few words a summary gives for where a RAM figure comes from."""
    for start, words in (("measured", "measured by TensorFlow Lite Micro"), ("reported", "reported by its compiler"),
                         ("vela", "vela's estimate")):
        if source.startswith(start):
            return words
    return "estimate"


def read(out: Path) -> dict:
    """The card in `out`, or an empty one (none yet, or unreadable: it is rewritten whole)."""
    try:
        card = json.loads((out / CARD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) and isinstance(card.get("formats"), dict) else {}


def write(out: Path, card: dict) -> None:
    """Write `card`, keeping the earlier entries of other formats whose files are still in `out`."""
    earlier = read(out)
    if earlier.get("classes") == card["classes"]:
        for name, entry in earlier["formats"].items():
            if name not in card["formats"] and isinstance(entry, dict) and _still_there(out, entry):
                card["formats"][name] = entry
        for target, name in (earlier.get("targets") or {}).items():  # which entry each target's deploy kept
            if target not in card.get("targets", {}) and card["formats"].get(name, {}).get("target") == target:
                card.setdefault("targets", {})[target] = name
    atomic_write_text(out / CARD, json.dumps(card, indent=2) + "\n")


def _still_there(out: Path, entry: dict) -> bool:
    if "folder" in entry:
        return (out / entry["folder"]).is_dir()
    return "file" in entry and (out / entry["file"]).is_file()
