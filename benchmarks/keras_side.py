"""The Keras side of benchmarks/peer_keras.py, run with the interpreter of a TensorFlow environment of its own
(`make keras-env`): the tutorial's way to train and to predict, timed. Prints one JSON object.

    .venv-keras/bin/python benchmarks/keras_side.py train FLOWERS_TRAIN_DIR EPOCHS
    .venv-keras/bin/python benchmarks/keras_side.py loop PHOTO_DIR COUNT
    .venv-keras/bin/python benchmarks/keras_side.py batched PHOTO_DIR
"""
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(2)
tf.config.threading.set_inter_op_parallelism_threads(2)
SIZE = (224, 224)
preprocess = keras.applications.mobilenet_v2.preprocess_input


def model(classes: int):
    return keras.applications.MobileNetV2(weights=None, classes=classes, input_shape=(*SIZE, 3))


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def train(folder: str, epochs: int) -> dict:
    data = keras.utils.image_dataset_from_directory(folder, image_size=SIZE, batch_size=32, seed=0)
    images = sum(int(x.shape[0]) for x, _ in data)
    data = data.map(lambda x, y: (preprocess(x), y)).prefetch(tf.data.AUTOTUNE)
    net = model(len(os.listdir(folder)))
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimes()
    net.fit(data, epochs=epochs, callbacks=[timer], verbose=0)
    rates = [images / t for t in timer.times[1:]]  # the first epoch traces and warms up
    return {"images": images, "epoch_seconds": timer.times, "images_per_s": statistics.median(rates)}


def loop(folder: str, count: int) -> dict:
    """The tutorial's one-image loop: load, preprocess, model.predict per image."""
    net = model(1000)
    paths = sorted(Path(folder).glob("*.jpg"))[:count]
    net.predict(np.zeros((1, *SIZE, 3), np.float32), verbose=0)
    start = time.perf_counter()
    for path in paths:
        x = keras.utils.img_to_array(keras.utils.load_img(path, target_size=SIZE))
        net.predict(preprocess(x[None]), verbose=0)
    return {"images": len(paths), "images_per_s": len(paths) / (time.perf_counter() - start)}


def batched(folder: str) -> dict:
    """Batched prediction in-process: image_dataset_from_directory (no labels), prefetch, model.predict."""
    net = model(1000)
    net.predict(np.zeros((32, *SIZE, 3), np.float32), verbose=0)
    start = time.perf_counter()
    data = keras.utils.image_dataset_from_directory(folder, labels=None, image_size=SIZE, batch_size=32,
                                                    shuffle=False)
    data = data.map(preprocess).prefetch(tf.data.AUTOTUNE)
    scores = net.predict(data, verbose=0)
    return {"images": len(scores), "images_per_s": len(scores) / (time.perf_counter() - start)}


if __name__ == "__main__":
    mode, folder, *rest = sys.argv[1:]
    result = {"train": lambda: train(folder, int(rest[0])), "loop": lambda: loop(folder, int(rest[0])),
              "batched": lambda: batched(folder)}[mode]()
    result["versions"] = {"tensorflow": tf.__version__, "keras": keras.__version__}
    print(json.dumps(result))
