"""The studio's memory for zip bombs: a 1 MB zip that unpacks to 1 GB (16 members of 64 MB: a PNG's first bytes, then
zeros), uploaded once and then 4 at once, against `mobiclass studio` from this tree and, beside it in the same run,
from a reference revision (by default the last one before uploads were streamed); resident memory idle and at peak.

    .venv/bin/python benchmarks/studio_zip_memory.py                     # writes the table into the README
    .venv/bin/python benchmarks/studio_zip_memory.py --reference none    # this tree only

The reference runs from a git worktree with this tree's virtual environment; revisions before 2026-12 need huey
(`.venv/bin/pip install huey`).
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO, PeakMemory, machine, markdown_table, resident_mb, start_mobiclass,  # noqa: E402
                    write_readme_section)

MEMBERS, MEMBER_BYTES = 16, 64 * 2**20
REFERENCE = "9bc5f8e"  # main before this change: members read whole into memory


def bomb() -> bytes:
    header = io.BytesIO()
    Image.new("RGB", (8, 8)).save(header, "PNG")
    member = header.getvalue()[:64] + bytes(MEMBER_BYTES - 64)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for i in range(MEMBERS):
            archive.writestr(f"bomb/{i:02d}.png", member)
    return buffer.getvalue()


def describe(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:60]
    if "error" in body:
        return body["error"]
    summary = body["classes"][0]
    return f"{body['added']} added, {len(summary['duplicates'])} duplicates, {len(summary['errors'])} refused"


def measure(tree: Path, data: bytes, uploads: int) -> dict:
    """One fresh studio from `tree` facing `uploads` concurrent uploads of `data`."""
    home = Path(tempfile.mkdtemp(prefix="zip-memory-"))
    studio, url = start_mobiclass(["studio", "--home", str(home)], cwd=tree,
                                  env={**os.environ, "PYTHONPATH": str(tree)})
    try:
        headers = {"X-Mobiclass": "1"}
        pid = httpx.post(f"{url}/api/projects", json={"name": "bombs"}, headers=headers).json()["id"]
        time.sleep(1)
        idle = resident_mb(studio.pid)
        start = time.perf_counter()
        with PeakMemory(studio.pid) as memory, ThreadPoolExecutor(uploads) as pool:
            answers = list(pool.map(lambda _: httpx.post(
                f"{url}/api/projects/{pid}/images:zip", files={"file": ("bomb.zip", data)}, headers=headers,
                timeout=1200), range(uploads)))
        seconds = time.perf_counter() - start
        said = describe(answers[0])
        return {"status": answers[0].status_code, "said": said, "seconds": seconds, "idle": idle,
                "peak": memory.peak}
    finally:
        studio.terminate()
        studio.wait()
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=REFERENCE, help="git revision to measure beside this tree, or none")
    args = parser.parse_args()
    data = bomb()
    trees = [("this tree", REPO)]
    worktree = None
    if args.reference != "none":
        worktree = Path(tempfile.mkdtemp(prefix="reference-")) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(worktree), args.reference],
                       check=True, capture_output=True)
        trees.append((f"reference ({args.reference})", worktree))
    rows = []
    try:
        for uploads in (1, 4):
            for name, tree in trees:
                result = measure(tree, data, uploads)
                rows.append([name, uploads, f"{result['status']}: {result['said'][:70]}", f"{result['seconds']:.1f}",
                             result["idle"], result["peak"], f"+{result['peak'] - result['idle']}"])
                print(rows[-1], flush=True)
    finally:
        if worktree:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)])
    table = markdown_table(["studio", "uploads at once", "answer (first upload)", "s", "idle MB", "peak MB",
                            "growth MB"], rows)
    write_readme_section("zip-memory", f"`python benchmarks/studio_zip_memory.py` ({len(data) / 2**20:.2f} MB zip "
                                       f"of {MEMBERS} members of {MEMBER_BYTES // 2**20} MB: 1 GB unpacked; resident "
                                       f"memory of the studio's process; {machine()}).\n\n{table}")
    print(table)


if __name__ == "__main__":
    main()
