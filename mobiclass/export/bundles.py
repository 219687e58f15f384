"""What goes beside a converted model so that it runs on the board: labels.txt, the target's metadata (MaixPy's
.mud), a small board-side program with the same preprocessing as mobiclass, and a README with the copy-and-run steps.
Programs are templates filled with this model's numbers; tests load them and compare their preprocessing with ours."""
from __future__ import annotations

from pathlib import Path

from ..files import atomic_write_text
from ..runtime import Classifier

CROP_FUNCTION = '''
def center_crop(image):
    """Resize the shorter side to RESIZE and keep the central SIZE square, in one resampling (as mobiclass does)."""
    width, height = image.size
    crop = SIZE * min(width, height) / RESIZE
    left, top = (width - crop) / 2, (height - crop) / 2
    return image.resize((SIZE, SIZE), INTERPOLATION, box=(left, top, left + crop, top + crop), reducing_gap=3.0)
'''

NCNN_SCRIPT = '''"""Classify images with the ncnn model in this folder (a phone, a Raspberry Pi, any machine with ncnn).

    pip install ncnn pillow numpy
    python3 classify.py photo.jpg [more.jpg ...]
"""
import sys
from pathlib import Path

import ncnn
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE, RESIZE, INTERPOLATION = {size}, {resize}, Image.Resampling.{interpolation}
MEAN, NORM = {mean}, {norm}  # (pixel - MEAN) * NORM, in 0..255 units, as the model was trained
TEMPERATURE = {temperature}  # logits / TEMPERATURE before softmax: confidences calibrated after training
LABELS = (HERE / "labels.txt").read_text(encoding="utf-8").splitlines()
{crop}

def preprocess(image):
    """RGB image -> uint8 array (SIZE, SIZE, 3): what the model takes before MEAN and NORM."""
    return np.asarray(center_crop(image.convert("RGB")), dtype=np.uint8)


def classify(pixels, net):
    mat = ncnn.Mat.from_pixels(np.ascontiguousarray(pixels), ncnn.Mat.PixelType.PIXEL_RGB, SIZE, SIZE)
    mat.substract_mean_normalize(MEAN, NORM)
    extractor = net.create_extractor()
    extractor.input("in0", mat)
    _, output = extractor.extract("out0")
    logits = np.array(output).reshape(-1) / TEMPERATURE
    probabilities = np.exp(logits - logits.max())
    return probabilities / probabilities.sum()


if __name__ == "__main__":
    net = ncnn.Net()
    net.load_param(str(HERE / "model.ncnn.param"))
    net.load_model(str(HERE / "model.ncnn.bin"))
    for path in sys.argv[1:]:
        probabilities = classify(preprocess(Image.open(path)), net)
        best = probabilities.argsort()[::-1][:3]
        print(path, ", ".join(f"{{LABELS[i]}} {{probabilities[i]:.3f}}" for i in best))
'''

RKNN_SCRIPT = '''"""Classify images on a Rockchip board ({device}) with rknn-toolkit-lite2 and the model in this folder.

    pip install rknn-toolkit-lite2 pillow numpy      # on the board
    python3 classify.py photo.jpg [more.jpg ...]
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE, RESIZE, INTERPOLATION = {size}, {resize}, Image.Resampling.{interpolation}
LABELS = (HERE / "labels.txt").read_text(encoding="utf-8").splitlines()
TEMPERATURE = {temperature}  # logits / TEMPERATURE before softmax: confidences calibrated after training
# The model applies mean {mean} and std {std} (0..255 units) itself: give it plain uint8 RGB.
{crop}

def preprocess(image):
    """RGB image -> uint8 array (SIZE, SIZE, 3): what the model takes."""
    return np.asarray(center_crop(image.convert("RGB")), dtype=np.uint8)


if __name__ == "__main__":
    from rknnlite.api import RKNNLite

    rknn = RKNNLite()
    if rknn.load_rknn(str(HERE / "model.rknn")) != 0 or rknn.init_runtime() != 0:
        sys.exit("could not load model.rknn on this board's NPU")
    for path in sys.argv[1:]:
        logits = rknn.inference(inputs=[preprocess(Image.open(path))[None]], data_format="nhwc")[0].reshape(-1)
        logits = logits / TEMPERATURE
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        best = probabilities.argsort()[::-1][:3]
        print(path, ", ".join(f"{{LABELS[i]}} {{probabilities[i]:.3f}}" for i in best))
    rknn.release()
'''

MAIXCAM_SCRIPT = '''# MaixPy (MaixCAM): classify camera frames with the model in /root/models/mobiclass/,
# show the top class.
from maix import app, camera, display, image, nn

classifier = nn.Classifier(model="/root/models/mobiclass/model.mud")
cam = camera.Camera(classifier.input_width(), classifier.input_height(), classifier.input_format())
disp = display.Display()

while not app.need_exit():
    img = cam.read()
    best, probability = classifier.classify(img)[0]
    img.draw_string(10, 10, f"{{probability:5.2f}}: {{classifier.labels[best]}}", image.COLOR_RED)
    disp.show(img)
'''

K210_SCRIPT = '''# MaixPy for K210 (MicroPython): classify camera frames with /sd/model.kmodel and show the top class.
import math

import KPU as kpu
import lcd
import sensor

LABELS = {labels}
SIZE = {size}
TEMPERATURE = {temperature}  # logits / TEMPERATURE before softmax: confidences calibrated after training

lcd.init()
sensor.reset()
sensor.set_pixformat(sensor.RGB565)
sensor.set_framesize(sensor.QVGA)
sensor.set_windowing((SIZE, SIZE))  # the central SIZE x SIZE of the frame, as the model was verified on
sensor.run(1)
task = kpu.load("/sd/model.kmodel")  # mean {mean} and std {std} (0..255 units) are applied inside the kmodel

while True:
    img = sensor.snapshot()
    logits = [v / TEMPERATURE for v in kpu.forward(task, img)[:]]
    top = max(logits)
    total = sum(math.exp(v - top) for v in logits)
    best = logits.index(top)
    img.draw_string(0, 0, "%.2f: %s" % (1.0 / total, LABELS[best]), scale=2)
    lcd.display(img)
'''

MUD = '''[basic]
type = cvimodel
model = model.cvimodel

[extra]
model_type = classifier
input_type = rgb
mean = {mean}
scale = {scale}
labels = labels.txt
'''

ONNX_SCRIPT = '''"""Classify images with the ONNX model in this folder (a laptop, a server, a phone app with ONNX
Runtime).

    pip install onnxruntime pillow numpy
    python3 classify.py photo.jpg [more.jpg ...]

The int8 file (model.int8.onnx) is used when present: smaller and faster, verified within 1 point of the float one.
"""
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE, RESIZE, INTERPOLATION = {size}, {resize}, Image.Resampling.{interpolation}
MEAN, STD = {mean}, {std}  # (pixel - MEAN) / STD, in 0..255 units, as the model was trained
TEMPERATURE = {temperature}  # logits / TEMPERATURE before softmax: confidences calibrated after training
LABELS = (HERE / "labels.txt").read_text(encoding="utf-8").splitlines()
{crop}

def preprocess(image):
    """RGB image -> float32 array (1, 3, SIZE, SIZE), normalized as in training."""
    pixels = np.asarray(center_crop(image.convert("RGB")), dtype=np.float32)
    return ((pixels - np.array(MEAN, np.float32)) / np.array(STD, np.float32)).transpose(2, 0, 1)[None]


def classify(batch, session):
    logits = session.run(None, {{session.get_inputs()[0].name: batch}})[0][0] / TEMPERATURE
    probabilities = np.exp(logits - logits.max())
    return probabilities / probabilities.sum()


if __name__ == "__main__":
    model = HERE / "model.int8.onnx" if (HERE / "model.int8.onnx").exists() else HERE / "model.onnx"
    session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    for path in sys.argv[1:]:
        probabilities = classify(preprocess(Image.open(path)), session)
        best = probabilities.argsort()[::-1][:3]
        print(path, ", ".join(f"{{LABELS[i]}} {{probabilities[i]:.3f}}" for i in best))
'''

README = {
    "onnx": "# {title}: ONNX ({precision})\n\nOn any machine with Python:\n\n```\npip install onnxruntime pillow "
            "numpy\npython3 classify.py photo.jpg\n```\n\nOr with mobiclass: `mobiclass predict photo.jpg --model "
            "model.onnx`. `labels.txt` lists the classes in output order; `model-card.json` holds the verification "
            "figures. The model takes float32 NCHW at {size}x{size}, normalized as `classify.py` shows.\n",
    "tflite": "# {title}: TFLite ({precision})\n\nFor Android and microcontroller apps (LiteRT, formerly "
              "TensorFlow Lite). `labels.txt` lists the classes in output order; the model takes float32 at "
              "{size}x{size} normalized as in training (see `model-card.json`). Check it here with `mobiclass predict "
              "photo.jpg --model model.tflite`.\n",
    "ncnn": "# {title}: ncnn ({precision})\n\nCopy this folder to the device, then:\n\n```\npip install ncnn pillow "
            "numpy\npython3 classify.py photo.jpg\n```\n\n`model.ncnn.param` / `model.ncnn.bin` (converted by pnnx), "
            "`labels.txt` (one class per line, in output order), `classify.py` (the same resize and center crop as "
            "mobiclass, then mean/scale inside ncnn).\n",
    "rknn": "# {title}: Rockchip NPU, {device} ({precision})\n\nOn the board (Debian/Ubuntu image with the RKNPU2 "
            "driver):\n\n```\npip install rknn-toolkit-lite2 pillow numpy\npython3 classify.py photo.jpg\n```\n\n"
            "`model.rknn` takes 8-bit RGB at {size}x{size}, NHWC; mean and std are applied inside it. Built for "
            "{device} only: export again with `--device` for another chip.\n",
    "maixcam": "# {title}: MaixCAM ({precision})\n\n1. Copy `model.cvimodel`, `model.mud` and `labels.txt` to "
               "`/root/models/mobiclass/` on the MaixCAM (MaixVision's file manager, or `scp`).\n2. Run `main.py` in "
               "MaixVision (or copy it to the device and run it): the top class is drawn on the live camera "
               "image.\n\n`model.mud` carries mean and scale, which MaixPy applies to each frame. MaixPy computes its "
               "own softmax, without the temperature mobiclass fitted after training: the ranking is the same, the "
               "confidences are the uncalibrated ones.\n",
    "k210": "# {title}: Kendryte K210 ({precision})\n\n1. Copy `model.kmodel` to the SD card's root.\n2. Run `main.py` "
            "with MaixPy for K210 (MaixPy IDE, or save it as `/sd/boot.py`).\n\nThe kmodel takes the {size}x{size} "
            "camera window as 8-bit RGB; mean and std are applied inside it. MaixPy's standard firmware leaves about "
            "3.5 MB for a model: a larger kmodel (see `model-card.json`) needs a minimal MaixPy build.\n",
}

SCRIPTS = {"onnx": ("classify.py", ONNX_SCRIPT), "ncnn": ("classify.py", NCNN_SCRIPT),
           "rknn": ("classify.py", RKNN_SCRIPT), "maixcam": ("main.py", MAIXCAM_SCRIPT),
           "k210": ("main.py", K210_SCRIPT)}


def write(board: str, classifier: Classifier, folder: Path, model_files: list[str], precision: str,
          device: str = "rk3588") -> list[str]:
    """Write labels, metadata, the board program and the README beside `model_files`; every file of the bundle."""
    pre = classifier.preprocessing
    mean = [255.0 * m for m in pre.mean]
    std = [255.0 * s for s in pre.std]
    values = {"size": pre.size, "resize": pre.resize, "interpolation": pre.interpolation.upper(),
              "mean": _floats(mean), "std": _floats(std), "norm": _floats([1.0 / s for s in std]),
              "crop": CROP_FUNCTION, "device": device, "labels": repr(list(classifier.classes)),
              "temperature": repr(float(classifier.temperature))}
    atomic_write_text(folder / "labels.txt", "\n".join(classifier.classes) + "\n")
    if board in SCRIPTS:
        name, template = SCRIPTS[board]
        atomic_write_text(folder / name, template.format(**values))
    if board == "maixcam":
        atomic_write_text(folder / "model.mud", MUD.format(mean=", ".join(map(str, mean)),
                                                           scale=", ".join(str(1.0 / s) for s in std)))
    title = f"{classifier.architecture}, {len(classifier.classes)} classes"
    atomic_write_text(folder / "README.md", README[board].format(title=title, precision=precision, device=device,
                                                                 size=pre.size))
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def _floats(values: list[float]) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"
