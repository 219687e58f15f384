"""nncase 1.9: compile the board graph to a K210 kmodel (uint8, preprocessing inside), then run the verification
images on nncase's simulator."""
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _protocol import answer, request  # noqa: E402


def main() -> None:
    import nncase

    job = request()
    scratch, out, size = Path(job["scratch"]), Path(job["out"]), job["size"]
    options = nncase.CompileOptions()
    options.target = "k210"
    options.preprocess = True
    options.input_type = "uint8"
    options.input_layout = "NHWC"
    options.input_shape = [1, size, size, 3]
    options.input_range = [0, 255]
    options.mean = job["mean"]
    options.std = job["std"]
    options.quant_type = "uint8"
    options.w_quant_type = "uint8"
    compiler = nncase.Compiler(options)
    compiler.import_onnx(Path(job["onnx"]).read_bytes(), nncase.ImportOptions())
    calibration = np.load(job["calibration"]).astype(np.float32)  # NHWC, 0..255
    ptq = nncase.PTQTensorOptions()
    ptq.samples_count = len(calibration)
    ptq.set_tensor_data(calibration.tobytes())
    compiler.use_ptq(ptq)
    compiler.compile()
    kmodel = compiler.gencode_tobytes()
    (out / "model.kmodel").write_bytes(kmodel)
    simulator = nncase.Simulator()
    simulator.load_model(kmodel)
    started, logits = time.perf_counter(), []
    for pixels in np.load(job["verify"]):
        simulator.set_input_tensor(0, nncase.RuntimeTensor.from_numpy(pixels[None].astype(np.uint8)))
        simulator.run()
        logits.append(simulator.get_output_tensor(0).to_numpy().reshape(-1))
    seconds = time.perf_counter() - started
    np.save(scratch / "logits.npy", np.stack(logits).astype(np.float32))
    answer({"files": ["model.kmodel"], "logits": str(scratch / "logits.npy"), "run_seconds": seconds})


if __name__ == "__main__":
    main()
