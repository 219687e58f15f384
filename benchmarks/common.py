"""Helpers shared by the benchmark scripts: where the shared assets are, and writing tables into the README."""
from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import torch

from mobiclass.files import assets_dir

REPO = Path(__file__).resolve().parents[1]
ASSETS = assets_dir()


def shared_dataset(name: str = "flowers-mini") -> Path:
    """A dataset of the shared assets, or exit with status 2 saying where it was looked for."""
    folder = ASSETS / "datasets" / name
    if not folder.is_dir():
        raise SystemExit(f"{name} not found at {folder} (set MOBICLASS_ASSETS)")
    return folder


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, " \
           f"{torch.get_num_threads()} threads"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_readme_section(name: str, text: str) -> None:
    """Replace the text between <!-- bench:NAME --> and <!-- /bench:NAME --> in the README."""
    readme = REPO / "README.md"
    content = readme.read_text(encoding="utf-8")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in content:
        content = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, content, flags=re.S)
    else:
        content += f"\n{block}\n"
    readme.write_text(content, encoding="utf-8")
