"""``mobiclass doctor`` (what is wrong with a labelled photo set) and ``mobiclass select`` (which unlabelled
photos to label next)."""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from ..errors import UsageError
from ..files import check_writable
from .commands import console, print_table, shown_path


def run_doctor(args) -> int:
    from ..curation import apply_fixes, doctor

    if args.fix_list or args.fixed:
        if not (args.fix_list and args.fixed):
            raise UsageError("--fix-list and --fixed go together: the reviewed list, and the new folder for the "
                             "fixed copy")
        done = apply_fixes(args.data, args.fix_list, args.fixed)
        print(f"{done['fixed']}: {done['files']} photos ({done['moved']} moved, {done['deleted']} left out); "
              f"{shown_path(args.data)} is unchanged")
        return 0
    out = Path(args.out or "doctor")
    check_writable(out / "issues.json", "the doctor's report to")
    found = doctor(args.data, out, args.model, args.folds, progress=True, allow_outside=args.allow_outside)
    if args.format == "json":
        print(json.dumps(found, indent=2))
        return 0
    leaks = [g for g in found["duplicates"] if g["leak"]]
    summary = Table("check", "found", title=f"{shown_path(args.data)}: {found['photos']} photos, "
                                            f"{len(found['classes'])} classes")
    for name, value in (("suspected label errors", len(found["label_issues"])),
                        ("duplicate groups", len(found["duplicates"])), ("  across train and val (leaks)", len(leaks)),
                        ("outliers", len(found["outliers"])), ("odd files", len(found["image_problems"])),
                        ("unreadable files", len(found["unreadable"])),
                        ("largest / smallest class", found["imbalance"])):
        summary.add_row(name, str(value))
    print_table(summary)
    if found["label_issues"]:
        suspects = Table("photo", "split", "given", "suggested", "score", title="most suspect labels")
        for s in found["label_issues"][:10]:
            suspects.add_row(shown_path(s["path"]), s["split"], s["given"], s["suggested"], f"{s['score']:.2f}")
        print_table(suspects)
    data = Path(args.data)
    fixed = data.with_name(f"{data.stem}-fixed.csv") if data.is_file() else "NEW_FOLDER"  # a manifest's: beside it
    print(f"report: {out / 'report.html'}; proposals to review: {out / 'fix-list.csv'} (then mobiclass doctor "
          f"{shown_path(args.data)} --fix-list {out / 'fix-list.csv'} --fixed {fixed})")
    return 0


def run_select(args) -> int:
    from ..curation import select

    if args.out:
        check_writable(args.out, "the picks to")
    def skipped(unreadable: list[dict]) -> None:
        console.print(f"[yellow]skipped {len(unreadable)} unreadable file(s)[/yellow] of the pool, e.g. "
                      f"{unreadable[0]['path']}: {unreadable[0]['error']}")
    picks = select(args.model, args.pool, args.count, args.strategy, args.out, progress=True, on_skipped=skipped)
    if args.format == "json":
        print(json.dumps(picks, indent=2))
    elif args.out:
        print(f"{args.out}: {len(picks)} photos to label next, best first")
    else:
        for pick in picks:
            print(pick["path"])
    return 0
