"""Package data: the example fruits and the MobileNetV2 and MobileNetV1 0.25 ImageNet weights ship with mobiclass,
unchanged."""
import hashlib

from PIL import Image

from helpers import CAT_LABELS
from mobiclass import load_classifier
from mobiclass.datasets import fruits
from mobiclass.files import package_resource

FRUITS = ["apple", "kiwi", "orange", "pear", "strawberry"]


def test_every_shipped_file_has_its_recorded_checksum():
    root = package_resource("")
    listed = dict(line.split("  ", 1)[::-1] for line in (root / "SHA256SUMS").read_text().splitlines())
    present = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} - {"SHA256SUMS", "README.md"}
    assert set(listed) == present and len(listed) == 405  # 400 photos, two weights, two licences, the class names
    for name, digest in listed.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name
    assert listed["weights/tf2_mobilenet_v2_1.0_224_ptq.tflite"].startswith("5d3137241276e79c")
    assert listed["weights/mobilenet_v1_0.25_128_quant.tflite"].startswith("cb273c23ee76374b")


def test_fruits_example_is_a_train_and_val_folder_of_five_classes():
    root = fruits()
    for split, count in (("train", 60), ("val", 20)):
        assert sorted(p.name for p in (root / split).iterdir()) == FRUITS
        for name in FRUITS:
            photos = sorted((root / split / name).glob("*.jpg"))
            assert len(photos) == count
            assert Image.open(photos[0]).size == (100, 100)


def test_mobilenet_v2_classifies_offline_with_nothing_else(monkeypatch, tmp_path, photos):
    monkeypatch.setenv("MOBICLASS_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("MOBICLASS_ASSETS", str(tmp_path / "no-assets"))
    classifier = load_classifier("mobilenet_v2", engine="torch")
    assert classifier.padding == "tf" and classifier.source.endswith("tf2_mobilenet_v2_1.0_224_ptq.tflite")
    assert classifier.predict([photos["chelsea"]])[0]["label"] in CAT_LABELS
