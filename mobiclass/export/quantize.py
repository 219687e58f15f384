"""Static post-training int8 quantization with ONNX Runtime: QDQ format, per-channel weights."""
from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from collections.abc import Iterable

import numpy as np
import onnx

from ..errors import UsageError
from ..files import atomic_path
from ..metadata import METADATA_KEY, write_onnx_metadata


def quantize_int8(fp32_path: str | os.PathLike, path: str | os.PathLike, calibration: Iterable[np.ndarray],
                  exclude_first_last: bool = False) -> Path:
    """Quantize an exported fp32 file, calibrating activation ranges on real preprocessed image batches.

    `exclude_first_last` keeps the first convolution and the classifier in float, the usual fix when
    int8 loses too much accuracy.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = iter(calibration)

    class Reader(CalibrationDataReader):
        def get_next(self):
            batch = next(batches, None)
            return None if batch is None else {"images": batch.astype(np.float32)}

    model = onnx.load(str(fp32_path))
    weighted = [n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    exclude = [weighted[0], weighted[-1]] if exclude_first_last and weighted else []
    metadata = next(p.value for p in model.metadata_props if p.key == METADATA_KEY)
    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch, atomic_path(path) as tmp:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))  # shape inference and graph clean-up, as ORT advises
        quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
        write_onnx_metadata(tmp, metadata)
    return path


def quantize_tflite_int8(float_path: str | os.PathLike, path: str | os.PathLike,
                         calibration: Iterable[np.ndarray]) -> Path:
    """Full-integer (int8 weights and activations, int8 input and output) TFLite file from an exported float one,
    calibrated on real preprocessed image batches, with ai-edge-quantizer's static recipe."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise UsageError("int8 TFLite needs the converter and quantizer: pip install 'mobiclass[tflite]'") from None
    signatures = Interpreter(model_path=str(float_path)).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    job = quantizer.Quantizer(str(float_path))
    job.load_quantization_recipe(recipe.static_wi8_ai8())
    samples = [{name: image[None].astype(np.float32)} for batch in calibration for image in batch]
    path = Path(path)
    chatter = io.StringIO()  # the quantizer's progress bar and size report are not for our users
    with atomic_path(path) as tmp, warnings.catch_warnings(), redirect_stdout(chatter), redirect_stderr(chatter):
        warnings.simplefilter("ignore")
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs each step at WARNING
        job.quantize(job.calibrate({key: samples})).export_model(str(tmp), overwrite=True)
    return path
