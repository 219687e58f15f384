"""rknn-toolkit2: convert the board graph for a Rockchip NPU, then run the verification images on its simulator."""
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import answer, request  # noqa: E402


def check(code: int, step: str) -> None:
    if code != 0:
        sys.exit(f"rknn-toolkit2 failed at {step} (code {code})")


def main() -> None:
    from rknn.api import RKNN

    job = request()
    scratch, out = Path(job["scratch"]), Path(job["out"])
    listing = scratch / "dataset.txt"
    paths = []
    for i, pixels in enumerate(np.load(job["calibration"])):  # lossless, already at the input size
        paths.append(str(scratch / f"calibration_{i:04d}.png"))
        Image.fromarray(pixels).save(paths[-1])
    listing.write_text("\n".join(paths) + "\n")
    rknn = RKNN(verbose=False)
    rknn.config(mean_values=[job["mean"]], std_values=[job["std"]], target_platform=job["device"],
                quantized_method="channel")
    check(rknn.load_onnx(model=job["onnx"]), "load_onnx")
    check(rknn.build(do_quantization=job["precision"] == "int8", dataset=str(listing)), "build")
    check(rknn.export_rknn(str(out / "model.rknn")), "export_rknn")
    check(rknn.init_runtime(), "init_runtime (simulator)")
    verify = np.load(job["verify"])
    started = time.perf_counter()
    logits = [rknn.inference(inputs=[pixels[None]], data_format="nhwc")[0].reshape(-1) for pixels in verify]
    seconds = time.perf_counter() - started
    rknn.release()
    np.save(scratch / "logits.npy", np.stack(logits).astype(np.float32))
    answer({"files": ["model.rknn"], "logits": str(scratch / "logits.npy"), "run_seconds": seconds})


if __name__ == "__main__":
    main()
