"""Dataset scan, checks and splits: what users see before any training starts."""
import shutil

import pytest
from PIL import Image

from helpers import draw_shapes
from mobiclass import UsageError
from mobiclass.data.dataset import scan_dataset


def test_class_folders_are_scanned_and_split_stratified(shapes):
    (shapes / "circle" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (shapes / "square" / "notes.txt").write_text("not an image")
    Image.open(shapes / "circle" / "circle_000.png").convert("L").save(shapes / "circle" / "gray.png")
    Image.open(shapes / "square" / "square_000.png").convert("RGBA").save(shapes / "square" / "alpha.png")
    dataset = scan_dataset(shapes, val_split=0.25, seed=0)
    assert dataset.classes == ["circle", "square", "triangle"]
    assert dataset.split_origin == "random stratified split of 25% (seed 0)"
    assert dataset.counts("train") == [13, 13, 12] and dataset.counts("val") == [4, 4, 4]
    assert sorted((b["path"].rsplit("/", 1)[-1], b["error"]) for b in dataset.bad_files) == [
        ("broken.jpg", "not an image, or a format Pillow cannot read"),
        ("notes.txt", "not an image, or a format Pillow cannot read")]
    assert dataset.image_sizes == {"min": [64, 64], "median": [64, 64], "max": [64, 64]}
    assert not {s.path for s in dataset.splits["train"]} & {s.path for s in dataset.splits["val"]}


def test_split_is_reproducible_and_seeded(shapes):
    first, again, other = (scan_dataset(shapes, seed=s) for s in (0, 0, 1))
    assert first.split_manifest() == again.split_manifest()
    assert first.split_manifest()["val"] != other.split_manifest()["val"]


def test_train_val_test_folders_and_duplicates(tmp_path):
    for split, n in (("train", 8), ("val", 3), ("test", 2)):
        draw_shapes(tmp_path / "data" / split, per_class=n, seed=len(split))
    shutil.copy(tmp_path / "data/train/circle/circle_000.png", tmp_path / "data/val/circle/copy.png")
    dataset = scan_dataset(tmp_path / "data")
    assert dataset.split_origin == "folders train/val/test"
    assert dataset.counts("train") == [8, 8, 8] and dataset.counts("val") == [4, 3, 3]
    assert dataset.counts("test") == [2, 2, 2]
    assert len(dataset.duplicates) == 1 and dataset.duplicates[0]["splits"] == ["train", "val"]


def test_csv_manifest(tmp_path, shapes):
    rows = ["path,label,split"]
    for i, path in enumerate(sorted(shapes.rglob("*.png"))):
        rows.append(f"shapes/{path.parent.name}/{path.name},{path.parent.name},{'val' if i % 4 == 0 else 'train'}")
    rows.append("shapes/missing.png,circle,train")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    dataset = scan_dataset(tmp_path / "manifest.csv")
    assert dataset.split_origin == "manifest splits"
    assert sum(dataset.counts("train")) == 36 and sum(dataset.counts("val")) == 12
    assert dataset.bad_files == [{"path": str(tmp_path / "shapes/missing.png"), "split": "train", "class": "circle",
                                  "error": "no such file"}]


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "data not found: "),
    (lambda root: root.mkdir(), "has no class folders: put the images of each class in a sub-folder"),
    (lambda root: draw_shapes(root, classes=("circle",)), "a classifier needs at least 2 classes"),
])
def test_clear_errors(tmp_path, make, message):
    make(tmp_path / "data")
    with pytest.raises(UsageError, match=message):
        scan_dataset(tmp_path / "data")


def test_class_without_usable_images_is_an_error(shapes):
    (shapes / "empty").mkdir()
    (shapes / "empty" / "corrupt.jpg").write_bytes(b"garbage")
    with pytest.raises(UsageError, match="class\\(es\\) with no usable training image: empty"):
        scan_dataset(shapes)


def test_bad_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("file,class\na.png,cat\n")
    with pytest.raises(UsageError, match="must be a CSV with a header row naming 'path' and 'label'"):
        scan_dataset(tmp_path / "m.csv")
