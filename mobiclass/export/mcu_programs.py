"""The C and C++ beside a microcontroller model: the model as an aligned C array, this model's numbers (labels,
input size, crop, the pixel-to-int8 tables, the arena), the preprocessing in plain C (the same crop and resampling
as mobiclass, compiled and checked against it by the tests), an Arduino sketch, an ESP-IDF project and a README.
The sources are files under ``mcu_files/``; the programs are ``string.Template``s filled with this model's
operators and arena."""
from __future__ import annotations

from pathlib import Path
from string import Template

import numpy as np

from ..files import atomic_write_text
from ..runtime import Classifier

SOURCES = Path(__file__).with_name("mcu_files")
# bundle file -> its source under mcu_files/ (programs are filled in; the rest is copied as is)
TFLM_SOURCES = ("mobiclass_preprocess.h", "tflm.ino", "esp-idf/CMakeLists.txt", "esp-idf/main/CMakeLists.txt",
                "esp-idf/main/idf_component.yml", "esp-idf/main/main.cc")
BUNDLE_SOURCES = {"tflm": {name: name for name in TFLM_SOURCES},
                  "ethos-u": {"mobiclass_preprocess.h": "mobiclass_preprocess.h", "main.cc": "ethos-u/main.cc"}}
PROGRAMS = ("tflm.ino", "esp-idf/main/main.cc", "main.cc")

ARENA_MARGIN = 1.1  # the interpreter's figure plus 10%: TFLite Micro's advice for what differs between builds

README = '''# {title}: {what}

{verified}

Set the tensor arena to **{arena_set:,} bytes** (`MOBICLASS_ARENA_SIZE` in `mobiclass_model.h`): TensorFlow Lite Micro
allocated {arena:,} bytes for this model when mobiclass verified it (its recording allocator, on a 64-bit host, where
its bookkeeping is larger than on a 32-bit MCU), plus 10%. The model takes {flash:,} bytes of flash.

| file | what |
|---|---|
{files}

The model takes int8 NHWC input, {size}x{size}x3. `mobiclass_preprocess()` turns an RGB888 or RGB565 camera
frame into it exactly as mobiclass was trained and verified: the central square of {size}/{resize} of the shorter
side, resampled with a triangle filter, then each channel through `mobiclass_tables` (mean, std and the input
quantization folded into 256 entries). `mobiclass_top1()` applies the calibrated temperature ({temperature:g}) and
returns the confidence of the top class.
{how}'''

HOW = {
    "tflm": '''
## Arduino (Nicla Vision, Portenta H7, other mbed boards)

Open this folder in the Arduino IDE (`tflm.ino`), install the **Chirale_TensorFlowLite** library, select the board,
upload, and open the Serial Monitor at 115200 baud: each frame prints the top class, its confidence and the time.

## ESP-IDF (ESP32-S3 with 8 MB PSRAM: XIAO ESP32S3 Sense, ESP32-S3-EYE)

```
cd esp-idf
idf.py set-target esp32s3
idf.py build flash monitor
```

The arena is allocated in PSRAM; `espressif/esp-tflite-micro` and `espressif/esp32-camera` come from the ESP
component registry (`main/idf_component.yml`). Adjust the camera pins in `main/main.cc` for another board.
''',
    "ethos-u": '''
## Ethos-U55 (Grove Vision AI V2, Alif Ensemble, Corstone-300)

`model_vela.tflite` (in `model_data.cc`) was compiled by vela {vela_version} for `{accelerator}`: its NPU operators
run as one `ethos-u` custom operator, so build TensorFlow Lite Micro with the Ethos-U driver
(`make -f tensorflow/lite/micro/tools/make/Makefile TARGET=cortex_m_corstone_300 CO_PROCESSOR=ethos_u ...`)
and register it with `resolver.AddEthosU()` (done in `main.cc`). vela's own figures for this model: {vela}.
`model.tflite` is the int8 model before vela, which runs on any Cortex-M with TensorFlow Lite Micro alone.
''',
}


def write_programs(board: str, classifier: Classifier, out: Path, device_model: bytes, arena: int,
                   quantization: tuple[float, int], mean: list[float], std: list[float],
                   vela: dict | None = None) -> list[str]:
    """Write the sources and the README for `board` ("tflm" or "ethos-u") into `out`; the names written."""
    from .mcu import pixel_tables

    ops = operator_names(device_model)
    arena_set = int(arena * ARENA_MARGIN + 15) // 16 * 16
    output_scale, output_zero = output_quantization(device_model)
    atomic_write_text(out / "model_data.h", "#pragma once\n#include <stdint.h>\n\n"
                      "extern const unsigned char g_model[];\nextern const unsigned int g_model_len;\n")
    atomic_write_text(out / "model_data.cc", _c_array(device_model))
    tables = pixel_tables(mean, std, *quantization)
    atomic_write_text(out / "mobiclass_model.h", _model_header(classifier, tables, arena_set, output_scale,
                                                               output_zero))
    resolver = "\n".join(f"  resolver.{_resolver_call(op)};" for op in ops)
    values = {"op_count": len(ops), "arena_kb": f"{arena / 1000:,.0f}",
              "resolver": resolver if board == "tflm" else "  " + resolver.replace("\n", "\n  ")}
    names = ["model_data.h", "model_data.cc", "mobiclass_model.h"]
    for name, source in BUNDLE_SOURCES[board].items():
        text = (SOURCES / source).read_text(encoding="utf-8")
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / name, Template(text).substitute(values) if name in PROGRAMS else text)
        names.append(name)
    atomic_write_text(out / "labels.txt", "\n".join(classifier.classes) + "\n")
    names.append("labels.txt")
    atomic_write_text(out / "README.md", _readme(board, classifier, names, arena, arena_set, len(device_model),
                                                 vela or {}))
    return names + ["README.md"]


def operator_names(model: bytes) -> list[str]:
    """The operators `model` uses (TFLite builtin names; custom ones by their custom code), in first-use order."""
    import tflite

    graph_model = tflite.Model.GetRootAsModel(model, 0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
    used = []
    graph = graph_model.Subgraphs(0)
    for i in range(graph.OperatorsLength()):
        code = graph_model.OperatorCodes(graph.Operators(i).OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, "CUSTOM")
        if name == "CUSTOM":
            name = code.CustomCode().decode()
        if name not in used:
            used.append(name)
    return used


def output_quantization(model: bytes) -> tuple[float, int]:
    import tflite

    graph = tflite.Model.GetRootAsModel(model, 0).Subgraphs(0)
    quant = graph.Tensors(int(graph.OutputsAsNumpy()[0])).Quantization()
    return float(quant.ScaleAsNumpy()[0]), int(quant.ZeroPointAsNumpy()[0])


def _resolver_call(op: str) -> str:
    """CONV_2D -> AddConv2D(), ethos-u -> AddEthosU(): MicroMutableOpResolver's method for an operator."""
    if op == "ethos-u":
        return "AddEthosU()"
    words = [w if w[0].isdigit() else w.capitalize() for w in op.split("_")]
    return "Add" + "".join(w.upper() if w[0].isdigit() else w for w in words) + "()"


def _c_array(data: bytes) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 16]) for i in range(0, len(data), 16)]
    return ('#include "model_data.h"\n\n// The model, 16-byte aligned as TensorFlow Lite Micro reads it in place.\n'
            "alignas(16) const unsigned char g_model[] = {\n  " + ",\n  ".join(rows) + "\n};\n"
            f"const unsigned int g_model_len = {len(data)};\n")


def _model_header(classifier: Classifier, tables: np.ndarray, arena: int, output_scale: float,
                  output_zero: int) -> str:
    pre = classifier.preprocessing
    labels = ", ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in classifier.classes)
    rows = ",\n".join("  {" + ", ".join(str(int(v)) for v in channel) + "}" for channel in tables)
    return f'''/* This model's numbers, written by mobiclass export. */
#ifndef MOBICLASS_MODEL_H
#define MOBICLASS_MODEL_H

#include <math.h>
#include <stdint.h>

#define MOBICLASS_SIZE {pre.size}
#define MOBICLASS_RESIZE {pre.resize}
#define MOBICLASS_CLASSES {len(classifier.classes)}
#define MOBICLASS_ARENA_SIZE {arena}
#define MOBICLASS_TEMPERATURE {float(classifier.temperature)!r}f
#define MOBICLASS_OUTPUT_SCALE {output_scale!r}f
#define MOBICLASS_OUTPUT_ZERO_POINT {output_zero}

static const char *const mobiclass_labels[MOBICLASS_CLASSES] = {{{labels}}};

/* pixel value (0..255) -> int8 input, per channel (R, G, B) */
static const int8_t mobiclass_tables[3][256] = {{
{rows}
}};

/* The top class of the int8 output in *best; its calibrated confidence (softmax of logits / temperature). */
static inline float mobiclass_top1(const int8_t *output, int *best) {{
  int top = 0;
  for (int i = 1; i < MOBICLASS_CLASSES; i++) if (output[i] > output[top]) top = i;
  float total = 0;
  for (int i = 0; i < MOBICLASS_CLASSES; i++)
    total += expf((output[i] - output[top]) * MOBICLASS_OUTPUT_SCALE / MOBICLASS_TEMPERATURE);
  *best = top;
  return 1.0f / total;
}}

#endif
'''


def _readme(board: str, classifier: Classifier, names: list[str], arena: int, arena_set: int, flash: int,
            vela: dict) -> str:
    pre = classifier.preprocessing
    described = {"model_data.cc": "the model as a C array (`g_model`, 16-byte aligned)",
                 "model_data.h": "its declaration",
                 "mobiclass_model.h": "labels, input size, the pixel tables, the arena size, `mobiclass_top1()`",
                 "mobiclass_preprocess.h": "`mobiclass_preprocess()`: camera frame to int8 input (plain C)",
                 "tflm.ino": "the Arduino sketch", "esp-idf/main/main.cc": "the ESP-IDF program",
                 "main.cc": "`mobiclass_classify()`: a camera frame in, the top class out (with the Ethos-U driver)",
                 "labels.txt": "the classes in output order"}
    files = "\n".join(f"| `{name}` | {described[name]} |" for name in names if name in described)
    files += "\n| `model.tflite` | the int8 model (also `mobiclass predict photo.jpg --model model.tflite`) |"
    what = "TensorFlow Lite Micro (int8)" if board == "tflm" else "Arm Ethos-U55 (int8, vela)"
    vela_text = (f"SRAM {vela['vela_sram_kib']:,.1f} KiB, flash {vela['vela_flash_kib']:,.1f} KiB, "
                 f"{vela['vela_latency_ms']:.2f} ms an inference, {vela['vela_npu_operators']} operators on the NPU "
                 f"and {vela['vela_cpu_operators']} on the CPU ({vela['vela_system']})") if vela else ""
    from importlib.metadata import PackageNotFoundError, version

    try:
        vela_version = version("ethos-u-vela")
    except PackageNotFoundError:
        vela_version = ""
    how = HOW[board].format(vela=vela_text, accelerator=vela.get("vela_accelerator", ""), vela_version=vela_version)
    return README.format(title=f"{classifier.architecture}, {len(classifier.classes)} classes", what=what,
                         verified="`model-card.json` holds the verification: every validation photo through the "
                                  "TensorFlow Lite Micro interpreter, its accuracy against PyTorch's.",
                         arena_set=arena_set, arena=arena, flash=flash, files=files, size=pre.size, resize=pre.resize,
                         temperature=float(classifier.temperature), how=how)
