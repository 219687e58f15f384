"""onnxruntime-web, the WebAssembly runtime of browser bundles: taken from the npm registry's tarball (checked
against its published sha512), once, and copied into every bundle, so that a page never loads code from a CDN.

It lives beside the Python environment (``PREFIX/share/mobiclass/``, which `make setup` fills) when that is
writable, else in ``MOBICLASS_HOME/web/``; `mobiclass toolchains --install web` fetches it ahead of time.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import UsageError
from ..files import atomic_path, cache_home
from ..pretrained import offline
from .toolchains import ToolchainError

VERSION = "1.30.0"
TARBALL = f"https://registry.npmjs.org/onnxruntime-web/-/onnxruntime-web-{VERSION}.tgz"
SHA512 = "q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="  # npm's integrity
# The WebAssembly-only build (CPU; no WebGPU) and its SIMD module: about 14 MB in a bundle.
FILES = ("dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm",
         "package.json")
# The package declares the MIT licence (package.json) without shipping its text: bundles carry it.
LICENSE = """onnxruntime-web {version} (https://github.com/microsoft/onnxruntime), MIT License

Copyright (c) Microsoft Corporation

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and associated
documentation files (the "Software"), to deal in the Software without restriction, including without limitation the
rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the Software, and to permit
persons to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial portions of the
Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE
WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR
COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""
NAME = f"onnxruntime-web-{VERSION}"
SIZE = "33 MB download, 14 MB kept"


def homes() -> list[Path]:
    """Where the runtime is looked for, in order: beside the Python environment, then the cache."""
    return [Path(sys.prefix) / "share" / "mobiclass" / NAME, cache_home() / "web" / NAME]


def installed() -> Path | None:
    return next((home for home in homes() if (home / "installed.json").is_file()), None)


def runtime(log=print) -> Path:
    """The folder holding the runtime's files, fetched first if needed (refused offline, with how to get it)."""
    return installed() or install(log)


def install(log=print) -> Path:
    """Download the tarball, check its sha512, keep the runtime's files; the marker is written last."""
    if (home := installed()) is not None:
        return home
    if offline():
        raise UsageError(f"browser bundles need onnxruntime-web {VERSION}, which is not here and MOBICLASS_OFFLINE "
                         f"is set; fetch it once with network: mobiclass toolchains --install web",
                         code="needs_web_runtime")
    home = next((h for h in homes() if _writable(h)), homes()[-1])
    log(f"first use of onnxruntime-web {VERSION}: fetching it from the npm registry into {home} ({SIZE}), once")
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(TARBALL, timeout=60) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ToolchainError(f"could not download {TARBALL} ({getattr(exc, 'reason', exc)})") from None
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != SHA512:
        raise ToolchainError(f"{TARBALL} does not match npm's published sha512 (got {digest}); nothing was kept")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for name in FILES:
            member = archive.extractfile(f"package/{name}")
            with atomic_path(home / Path(name).name) as tmp:
                tmp.write_bytes(member.read())
    (home / "LICENSE.txt").write_text(LICENSE.format(version=VERSION))
    (home / "installed.json").write_text(json.dumps({"version": VERSION, "sha512": SHA512, "files": list(FILES),
                                                     "seconds": round(time.perf_counter() - started, 1)}))
    return home


def _writable(home: Path) -> bool:
    folder = home
    while not folder.exists():
        folder = folder.parent
    return os.access(folder, os.W_OK)


def status() -> dict:
    home = installed()
    size = sum(p.stat().st_size for p in home.iterdir()) if home else 0
    return {"name": "web", "installed": home is not None, "python": "-", "size_mb": size / 1e6,
            "path": str(home or homes()[0]),
            "description": f"onnxruntime-web {VERSION}: the WebAssembly runtime copied into browser bundles"}
