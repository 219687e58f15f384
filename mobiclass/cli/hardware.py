"""``mobiclass targets``: the hardware catalogue, and with ``--model`` what that model costs on each target."""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from ..errors import UsageError
from .commands import print_table, shown_path


def run_targets(args) -> int:
    from ..targets import TARGETS

    model = _model_facts(args.model) if args.model else None
    rows = [_row(target, model) for target in TARGETS.values()]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if args.format == "markdown":
        print(catalogue_markdown(rows))
        return 0
    title = "Targets" if model is None else f"Targets for {shown_path(args.model)} ({model['describe']})"
    columns = ["target", "kind", "runs", "RAM kB", "flash kB", "latency known from"] if model is None else \
        ["target", "runs", "fits", "RAM kB", "flash kB", "latency ms", "why not / exported"]
    table = Table(*columns, title=title)
    for row in rows:
        runs = f"{row['format']} {'/'.join(row['precisions'])}"
        if model is None:
            table.add_row(row["name"], row["kind"], runs, f"{row['ram_kb']:,}", f"{row['flash_kb']:,}",
                          row["latency_known_from"])
            continue
        fit = row["model"]
        latency = "-" if fit["latency_ms"] is None else f"{fit['latency_ms']:.1f}" + \
            ("" if fit["latency_source"].startswith("measured") else " (est.)")
        note = fit.get("reason") or _exported(fit)
        table.add_row(row["name"] + (" *" if fit.get("trained_for") else ""), runs,
                      "[green]yes[/green]" if fit["fits"] else "[red]no[/red]",
                      f"{fit['ram_kb']:,.0f} / {row['ram_kb']:,}", f"{fit['flash_kb']:,.0f} / {row['flash_kb']:,}",
                      latency, note)
    print_table(table)
    if model is not None:
        print("RAM and flash: this model's estimate / the target's budget; latency: estimates are scaled from each "
              "target's published figure (--format json gives the sources); * the target it was trained for")
    return 0


def catalogue_markdown(rows: list[dict]) -> str:
    """The catalogue as the README shows it (its test compares the two)."""
    lines = ["| target | kind | RAM kB | flash kB | runs | default recipe | latency known from |", "|---" * 7 + "|"]
    for row in rows:
        recipe = row["recipes"][0]
        runs = f"{row['format']} ({', then '.join(row['precisions'])})"
        lines.append(f"| `{row['name']}` | {row['kind']} | {row['ram_kb']:,} | {row['flash_kb']:,} | {runs} | "
                     f"{recipe['model']} {recipe['width_mult']:g} at {recipe['image_size']} px | "
                     f"{row['latency_known_from']} |")
    return "\n".join(lines)


def _model_facts(model: str) -> dict:
    """Architecture, width, image size and classes of a run folder or a named model, without loading weights."""
    from ..models import CATALOG
    from ..run_folder import RunFolder, is_run_folder

    if is_run_folder(model):
        run = RunFolder(model)
        manifest = run.read_manifest()
        if not manifest:
            raise UsageError(f"{model} has no trained model yet (no model.json)")
        facts = {"architecture": manifest["architecture"], "width_mult": manifest.get("width_mult", 1.0),
                 "image_size": manifest["preprocessing"]["size"], "num_classes": len(manifest["classes"]),
                 "trained_for": manifest.get("training", {}).get("target") or None,
                 "card": _card(Path(model) / "export")}
    elif model in CATALOG:
        facts = {"architecture": model, "width_mult": 1.0, "image_size": CATALOG[model].resolution,
                 "num_classes": 1000, "trained_for": None, "card": {}}
    else:
        raise UsageError(f"mobiclass targets --model takes a run folder or a model name (see mobiclass models), "
                         f"got {model!r}")
    facts["describe"] = f"{facts['architecture']} width {facts['width_mult']:g} at {facts['image_size']} px, " \
                        f"{facts['num_classes']} classes"
    return facts


def _card(folder: Path) -> dict:
    from ..export.card import read

    return read(folder) if folder.is_dir() else {}


def _row(target, model: dict | None) -> dict:
    from ..targets import Recipe, estimate
    from ..targets.budget import latency_estimate

    row = {"name": target.name, "kind": target.kind, "description": target.description, "format": target.format,
           "precisions": list(target.precisions), "ram_kb": target.ram_kb, "flash_kb": target.flash_kb,
           "memory": target.memory_note, "max_image_size": target.max_image_size,
           "recipes": [{"model": r.model, "width_mult": r.width_mult, "image_size": r.image_size}
                       for r in target.recipes],
           "latency_known_from": latency_estimate(target, 0)[1]}
    if model is not None:
        recipe = Recipe(model["architecture"], model["width_mult"], model["image_size"])
        budget = estimate(target, recipe, model["num_classes"]).as_dict()
        exported = next((entry for entry in model["card"].get("formats", {}).values()
                         if isinstance(entry, dict) and entry.get("target") == target.name), None)
        if exported:  # the export's own figures: the file as written, latency measured where it was
            budget["exported"] = {k: exported.get(k) for k in ("precision", "verified", "accuracy", "top1_agreement",
                                                                "flash_kb", "latency_ms", "latency_source")}
        budget["trained_for"] = model["trained_for"] == target.name
        row["model"] = budget
        row.update({k: budget[k] for k in ("fits", "reason", "latency_ms", "latency_source") if k in budget},
                   model_ram_kb=budget["ram_kb"], model_flash_kb=budget["flash_kb"])
    return row


def _exported(fit: dict) -> str:
    exported = fit.get("exported")
    if not exported:
        return ""
    accuracy = f", accuracy {exported['accuracy']:.3f}" if exported.get("accuracy") is not None else ""
    return f"exported {exported['precision']}, {'verified' if exported['verified'] else 'NOT verified'}{accuracy}"
