"""Board toolchains in environments of their own: their pins clash with ours (tpu-mlir wants Python 3.10 and its own
torch, rknn-toolkit2 wants numpy<=1.26 and torch<=2.4, nncase 1.x is built for Python 3.10 only), so each lives in
``MOBICLASS_HOME/toolchains/NAME``, created on first use, and is driven as a subprocess: a worker script (shipped in
``export/workers/``, importing nothing of mobiclass) reads one JSON request on stdin and prints one JSON answer.
The recipes (versions, pins, fixes) are the ones measured in the project's board-toolchains notes."""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MobiclassError, UsageError
from ..files import cache_home

WORKERS = Path(__file__).resolve().parent / "workers"
ANSWER_TAG = "MOBICLASS-ANSWER "  # the tag of workers/_protocol.py


class ToolchainError(MobiclassError):
    """A toolchain that cannot be installed or that failed on a model."""

    exit_code = 1


@dataclass(frozen=True)
class Toolchain:
    name: str
    python: str  # the Python version its wheels need
    packages: tuple[str, ...]
    without_deps: tuple[str, ...] = ()  # installed first with --no-deps (their declared pins clash; measured to work)
    description: str = ""
    size: str = ""  # on disk once installed, as measured here
    minutes: str = ""  # the install as measured here (2 cores, the package registry's mirror); depends on the network

    def announcement(self) -> str:
        """What a first use is about to cost, said before it starts."""
        return (f"first use of {self.description.split(':')[0]}: installing it into {self.home} (about {self.size}, "
                f"about {self.minutes} here), once; `mobiclass toolchains --install {self.name}` does it ahead of time")

    @property
    def home(self) -> Path:
        return toolchains_home() / self.name

    @property
    def interpreter(self) -> Path:
        return self.home / "bin" / "python"

    @property
    def installed(self) -> bool:
        return (self.home / "installed.json").is_file()


TOOLCHAINS = {t.name: t for t in [
    Toolchain("rknn", "3.11", ("numpy<=1.26.4", "onnx>=1.16.1,<=1.18.0", "onnxruntime", "protobuf>=4.21.6,<=4.25.4",
                               "psutil", "ruamel.yaml", "scipy", "tqdm", "opencv-python-headless<4.11",
                               "fast-histogram", "setuptools<81", "torch==2.13.0", "pillow"),
              ("rknn-toolkit2==2.5.0",), "rknn-toolkit2 2.5.0: Rockchip RK3588/RK3566/RK3568 NPUs, with its simulator",
              "1.5 GB", "40 seconds"),
    Toolchain("k210", "3.10", ("nncase==1.9.0.20230322", "numpy<2", "onnx<1.17", "pillow"),
              description="nncase 1.9: Kendryte K210 KPU (.kmodel), with its simulator", size="175 MB",
              minutes="15 seconds"),
    Toolchain("maixcam", "3.10", ("tpu_mlir==1.30.2", "onnx==1.14.1", "onnxruntime==1.16.3", "onnxsim==0.4.17",
                                  "psutil", "torch", "pillow", "numpy<2", "setuptools<81"),
              description="tpu-mlir 1.30: Sophgo CV181x (MaixCAM) .cvimodel, with its cmodel simulator", size="7.4 GB",
              minutes="2 minutes"),
]}


def toolchains_home() -> Path:
    """``$MOBICLASS_TOOLCHAINS``, else ``MOBICLASS_HOME/toolchains``: hundreds of megabytes, installed once."""
    return Path(os.environ.get("MOBICLASS_TOOLCHAINS") or cache_home() / "toolchains")


def toolchain(name: str) -> Toolchain:
    try:
        return TOOLCHAINS[name]
    except KeyError:
        raise UsageError(f"unknown toolchain {name!r}; toolchains: {', '.join(TOOLCHAINS)}, web (onnxruntime-web)") \
            from None


def status() -> list[dict]:
    """Every toolchain: installed or not, where, its size on disk."""
    rows = []
    for chain in TOOLCHAINS.values():
        size = sum(p.stat().st_size for p in chain.home.rglob("*") if p.is_file()) if chain.installed else 0
        rows.append({"name": chain.name, "installed": chain.installed, "python": chain.python,
                     "size_mb": size / 1e6, "path": str(chain.home), "description": chain.description})
    return rows


def find_python(version: str) -> str:
    """An interpreter of `version`: on PATH, or among pyenv's installed versions."""
    for candidate in [shutil.which(f"python{version}"), *sorted(glob.glob(str(
            Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions" / f"{version}.*" / "bin" /
            f"python{version}")), reverse=True)]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    raise ToolchainError(f"this toolchain needs Python {version}, and none was found on PATH or in pyenv "
                         f"(install it, e.g. pyenv install {version})", code="needs_python", version=version)


def install(name: str, log=print) -> Toolchain:
    """Create the toolchain's environment (once): a venv of the right Python and the pinned packages. The marker
    ``installed.json`` is written last, so an interrupted install is started again from scratch. (Built in place: a
    venv's console scripts name their interpreter's path, so it cannot be moved afterwards.)"""
    chain = toolchain(name)
    if chain.installed:
        return chain
    python = find_python(chain.python)
    log(chain.announcement())
    building = chain.home
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps = [[python, "-m", "venv", str(building)],
             [str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"]]
    if chain.without_deps:
        steps.append([str(building / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                      *chain.without_deps])
    steps.append([str(building / "bin" / "python"), "-m", "pip", "install", "-q", *chain.packages])
    for number, step in enumerate(steps, 1):
        log(f"{name} [{number}/{len(steps)}, {time.perf_counter() - started:.0f} s]: "
            f"{' '.join(step[2:] if step[1] == '-m' else step)}")
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise ToolchainError(f"installing the {name} toolchain failed at `{' '.join(step[1:])}`:\n"
                                 f"{_tail(done.stderr)}")
    _fix(chain, building)
    (building / "installed.json").write_text(json.dumps({"packages": [*chain.without_deps, *chain.packages],
                                                         "seconds": time.perf_counter() - started}))
    return chain


def _fix(chain: Toolchain, env: Path) -> None:
    """tpu-mlir ships Ubuntu's glibc 2.35 libraries first on its library path; on Debian 12 every tool then fails
    (`GLIBC_2.36' not found, required by libexpat): remove those three files, as measured."""
    if chain.name != "maixcam":
        return
    for folder in env.glob("lib/python*/site-packages/tpu_mlir/lib/third_party"):
        for library in ("libc.so.6", "libm.so.6", "libpthread.so.0"):
            (folder / library).unlink(missing_ok=True)


def run_worker(name: str, request: dict, timeout: float = 3600) -> dict:
    """Run the toolchain's worker on `request` (installing the toolchain first if needed); its JSON answer."""
    chain = install(name, log=lambda text: print(text, file=sys.stderr))
    script = WORKERS / f"{name}_worker.py"
    done = subprocess.run([str(chain.interpreter), str(script)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONNOUSERSITE": "1"},
                          cwd=request["scratch"])  # toolchains leave notes in their working folder
    answer = next((line[len(ANSWER_TAG):] for line in reversed(done.stdout.splitlines())
                   if line.startswith(ANSWER_TAG)), None)
    if done.returncode != 0 or answer is None:
        raise ToolchainError(f"the {name} toolchain failed on this model:\n{_tail(done.stderr or done.stdout)}")
    return {**json.loads(answer), **({"memory": memory} if (memory := compiler_memory(done.stdout)) else {})}


def compiler_memory(log: str) -> dict[str, int]:
    """The memory a compiler reports for the model it built, in bytes: nncase's "MEMORY USAGES" table (.input,
    .output, .data: working memory; MODEL; TOTAL), or tpu-mlir's `model_tool --info` (the ION memory a cvimodel
    needs: TOTAL; its weight and command sections: MODEL; the rest: data)."""
    usage = {}
    if "MEMORY USAGES" in log:
        for line in log.split("MEMORY USAGES", 1)[1].strip().splitlines():
            match = re.fullmatch(r"\s*(\S+)\s+[\d.]+ [KMG]?B\s+\((\d+) B\)\s*", line)
            if not match:
                break
            usage[match[1].lstrip(".")] = int(match[2])
    ion = re.search(r"Need ION Memory Size: \(([\d.]+) MB\)", log)
    if ion:
        sections = sum(int(size) for size in re.findall(r"^\d{3}\s+(?:weight|cmdbuf)\s+\S+\s+(\d+)\s", log, re.M))
        usage.update(TOTAL=round(float(ion[1]) * 2**20), MODEL=sections)
        usage["data"] = max(usage["TOTAL"] - sections, 0)
    return usage


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
