"""The hardware a model can be deployed to: one small record per target, readable without torch (``mobiclass
targets`` lists it instantly). A target decides, in one place, the export format, the precisions tried in order,
the memory budget and the recipes (architecture, width, image size) that suit it, best first.

Budgets are the device's: ``ram_kb`` is the memory left for activations, ``flash_kb`` the storage for weights.
Latency is never invented: either measured here, or scaled by multiply-adds from one published measurement of
a MobileNet on that device (its source is named), or unknown.
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ("cpu", "npu", "mcu", "browser")
BYTES_PER_VALUE = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "uint8": 1}


@dataclass(frozen=True)
class Recipe:
    model: str
    width_mult: float
    image_size: int

    def describe(self) -> str:
        return f"{self.model} width {self.width_mult:g} at {self.image_size} px"


@dataclass(frozen=True)
class Published:
    """One published latency of a MobileNet on the device: the figure every estimate for it is scaled from."""

    ms: float
    recipe: Recipe
    precision: str
    source: str


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    description: str
    format: str  # the export format of its bundle (see mobiclass export --format)
    precisions: tuple[str, ...]  # tried in this order at export; the first that keeps the accuracy is kept
    ram_kb: int
    flash_kb: int
    memory_note: str  # what the two budgets are, and where they come from
    recipes: tuple[Recipe, ...]  # best first; train --target takes the first that fits
    max_image_size: int | None = None
    latency: Published | None = None  # None: measured here (laptop) or unknown
    calibration: tuple[Published, ...] = ()  # more published figures: with them, estimates are fitted, error stated
    chip: str | None = None  # for formats that build per chip (rknn)
    bytes_per_weight: float | None = None  # measured from its compiler's files, where they are not 1 byte per int8
    memory_hint: str = ""  # what to do when its compiler reports a model too big
    padding: str | None = None  # the padding its compiler needs, which train --target sets
    # training options train --target sets unless given: small models fine-tune in about a second an epoch, and the
    # usual early stopping (4 epochs) ends them before fine-tuning beats the head stage
    training: tuple[tuple[str, int], ...] = ()

    @property
    def runs(self) -> str:
        return f"{self.format} {'/'.join(self.precisions)}"


V2 = "mobilenet_v2"
LITE0 = "efficientnet_lite0"
V2_224, V2_160, V2_128, V2_96 = (Recipe(V2, 1.0, size) for size in (224, 160, 128, 96))
LITE0_224 = Recipe(LITE0, 1.0, 224)
# Measured on flowers-mini (benchmarks/targets.py): V1 0.5 at 128 px needs a 248 kB arena in TensorFlow Lite Micro.
V1_SMALL = (Recipe("mobilenet_v1", 0.5, 128), Recipe("mobilenet_v1", 0.25, 128), Recipe("mobilenet_v1", 0.25, 96))
MCU_TRAINING = (("epochs", 20), ("early_stopping", 8))
STM32H747 = Published(94.0, Recipe(V2, 0.35, 128), "int8", "ST model zoo: MobileNetV2 0.35/128 on an STM32H747 at "
                                                           "400 MHz, 94 ms")
# ST model zoo, image_classification/mobilenetv1/README.md: STM32H747I-DISCO, 1 CPU at 400 MHz, STM32Cube.AI 10.0.0
ST_V1 = "ST model zoo (mobilenetv1), STM32H747I-DISCO at 400 MHz, STM32Cube.AI 10.0"
STM32H747_MORE = tuple(Published(ms, Recipe("mobilenet_v1", width, size), "int8", ST_V1) for ms, width, size in (
    (29.94, 0.25, 96), (163.78, 0.25, 224), (485.79, 0.5, 224), (1641.84, 1.0, 224)))

TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("laptop", "cpu", "a PC or server CPU: ONNX Runtime or OpenVINO", "onnx", ("int8", "fp32"),
           4_000_000, 1_000_000, "4 GB of RAM, 1 GB of disk for the model (any laptop)", (LITE0_224, V2_224)),
    Target("phone", "cpu", "Android or iOS with LiteRT (TensorFlow Lite), on the CPU", "tflite", ("int8", "fp32"),
           512_000, 100_000, "512 MB of RAM for the app, 100 MB for the model in the app package",
           (LITE0_224, V2_224),
           latency=Published(19.37, V2_224, "fp32", "Paddle Lite v2.11 benchmark, Snapdragon 855, 1 thread, fp32 "
                                                    "(paddlepaddle.org.cn/lite/performance/benchmark.html)")),
    Target("raspberry-pi", "cpu", "Raspberry Pi 4 (Cortex-A72) with ncnn", "ncnn", ("fp16", "fp32"),
           1_000_000, 1_000_000, "the 1 GB Raspberry Pi 4; the model on its SD card", (V2_224, LITE0_224),
           latency=Published(61.88, V2_224, "fp32", "ncnn benchmark/README.md, Raspberry Pi 4 Model B 1.8 GHz, "
                                                    "4 threads (benchncnn 10 4 0)")),
    Target("rk3588", "npu", "Rockchip RK3588 NPU (Orange Pi 5, Rock 5) with rknn-toolkit-lite2", "rknn",
           ("int8", "fp16"), 4_000_000, 1_000_000, "4 GB boards; the NPU shares the board's RAM", (V2_224, LITE0_224),
           chip="rk3588",
           latency=Published(2.31, V2_224, "int8", "rknn_model_zoo performance table: mobilenetv2-12 INT8, 433.0 FPS "
                                                   "on one RK3588 NPU core")),
    Target("rk3566", "npu", "Rockchip RK3566/RK3568 NPU (Radxa Zero 3, Orange Pi 3B) with rknn-toolkit-lite2", "rknn",
           ("int8", "fp16"), 2_000_000, 1_000_000, "2 GB boards; the NPU shares the board's RAM", (V2_224, LITE0_224),
           chip="rk3566",
           latency=Published(5.07, V2_224, "int8", "rknn_model_zoo performance table: mobilenetv2-12 INT8, 197.4 FPS "
                                                   "on RK3566/RK3568")),
    Target("maixcam", "npu", "Sipeed MaixCAM (Sophgo SG2002, cv181x TPU) with MaixPy", "maixcam", ("int8", "bf16"),
           256_000, 1_000_000, "the SG2002's 256 MB of DRAM, shared with Linux and the camera; models on the SD card",
           (V2_224, V2_160)),
    Target("k210", "npu", "Kendryte K210 KPU (Maix Bit, Maix Dock, M1) with MaixPy", "k210", ("uint8",),
           760, 5_500, "measured: nncase 1.9 fits a largest layer (input + output, uint8) of about 760 kB in the KPU's "
                       "2 MB; about 5.5 MB of the 6 MB CPU SRAM is free for a model, 3.5 MB under MaixPy's standard "
                       "firmware (Sipeed's K210 notes): a larger kmodel needs a minimal MaixPy build",
           (V2_128, Recipe(V2, 0.5, 224), Recipe(V2, 0.35, 224)), max_image_size=320,
           latency=Published(37.0, Recipe("mobilenet_v1", 0.75, 224), "uint8", "Sipeed forum (bbs.sipeed.com/t/1790): "
                                                                         "MobileNetV1 0.75 kmodel V3, 37 ms"),
           bytes_per_weight=1.7,
           memory_hint="Measured with nncase 1.9: TF \"SAME\" padding (the imported TFLite weights) costs 3.5 MB of "
                       "working memory for MobileNetV2 1.0 at 128 px, symmetric padding (torchvision's weights, "
                       "downloaded once when online) 384 kB; a model trained for the k210 target pads symmetrically",
           padding="torch"),  # measured: 3.79 MB kmodels for MobileNetV2 1.0's 2.23 M weights, either padding
    Target("esp32-s3", "mcu", "ESP32-S3 with 8 MB PSRAM (XIAO ESP32S3 Sense) and TensorFlow Lite Micro", "tflm",
           ("int8",), 8_192, 8_192, "8 MB of PSRAM for the tensor arena, 8 MB of flash", (V2_96, *V1_SMALL),
           latency=Published(1296.0, V2_224, "int8", "Espressif imagenet_cls component 0.2: mobilenetv2_s8 on "
                                                     "ESP32-S3, 1,296 ms (ESP-DL)"), training=MCU_TRAINING),
    Target("stm32h7", "mcu", "STM32H7 (STM32H747, Cortex-M7) with TensorFlow Lite Micro", "tflm", ("int8",),
           1_024, 2_048, "1 MB of SRAM, 2 MB of internal flash", V1_SMALL, latency=STM32H747, training=MCU_TRAINING,
           calibration=STM32H747_MORE),
    Target("nicla-vision", "mcu", "Arduino Nicla Vision (STM32H747) with TensorFlow Lite Micro", "tflm", ("int8",),
           1_024, 2_048, "1 MB of SRAM, 2 MB of internal flash", V1_SMALL, latency=STM32H747, training=MCU_TRAINING,
           calibration=STM32H747_MORE),
    Target("ethos-u55", "mcu", "Arm Ethos-U55 NPU beside a Cortex-M55 (Grove Vision AI V2, Alif Ensemble)",
           "ethos-u", ("int8",), 2_048, 16_384, "about 2 MB of SRAM, 16 MB of flash (Grove Vision AI V2)",
           (V2_96, *V1_SMALL), training=MCU_TRAINING),
    Target("browser", "browser", "a web page with onnxruntime-web (WebAssembly), offline", "web", ("int8", "fp32"),
           1_000_000, 20_000, "1 GB for the tab, 20 MB of download for the model", (V2_224, LITE0_224)),
]}
