"""Export: ONNX round trip, int8 with its accuracy check, metadata, the ONNX engines, bad files."""
import json

import numpy as np
import onnx
import pytest

from helpers import ASSETS, CAT_LABELS, hostile_to_int8
from mobiclass import UsageError, WeightsError, load_classifier
from mobiclass.cli import advice, main
from mobiclass.evaluate.compare import compare
from mobiclass.export import VerificationError, export
from mobiclass.export import exporter as exporter_module
from mobiclass.runtime.engines import OnnxRuntimeEngine, OpenVinoEngine, remembered_timings
from mobiclass.train import train

FLOWERS = ASSETS / "datasets" / "flowers-mini"


def test_onnx_round_trip_agrees_with_pytorch(shapes_run, tmp_path):
    data, run = shapes_run
    card = export(run, out=tmp_path / "out")
    onnx_card = card["formats"]["onnx"]
    assert card["verified"] and onnx_card["top1_agreement"] >= 0.999
    assert card["verified_on"] == 9  # 3 validation images per class
    assert onnx_card["accuracy"] == card["formats"]["pytorch"]["accuracy"]
    assert json.loads((tmp_path / "out" / "model-card.json").read_text())["formats"]["onnx"]["file"] == "model.onnx"
    exported = load_classifier(tmp_path / "out" / "model.onnx")  # the file alone is enough
    assert exported.classes == ["circle", "square", "triangle"]
    images = sorted((data / "triangle").glob("*.png"))
    torch_labels = [r["label"] for r in load_classifier(run, engine="torch").predict(images)]
    assert [r["label"] for r in exported.predict(images)] == torch_labels


def test_every_row_of_the_card_scores_the_same_photos_when_one_was_deleted_since_training(shapes_run, tmp_path):
    import shutil

    _, run = shapes_run
    copy = shutil.copytree(run, tmp_path / "run")
    split = json.loads((copy / "split.json").read_text())
    split["val"][0][0] = str(tmp_path / "deleted-since-training.png")
    (copy / "split.json").write_text(json.dumps(split))
    card = export(copy, out=tmp_path / "out")
    assert card["verified_on"] == 8 and card["unreadable"] == 1  # 9 validation photos, one gone
    assert (card["formats"]["pytorch"]["accuracy"] * 8).is_integer()  # scored on the 8 that are left
    assert card["formats"]["onnx"]["accuracy"] == card["formats"]["pytorch"]["accuracy"]
    assert card["formats"]["onnx"]["top1_agreement"] == 1.0


def test_torchscript_export_round_trip(shapes_run, tmp_path):
    data, run = shapes_run
    card = export(run, out=tmp_path, formats="onnx,torchscript")
    assert list(card["formats"]) == ["pytorch", "onnx", "torchscript"]
    assert card["formats"]["torchscript"]["top1_agreement"] == 1.0
    scripted = load_classifier(tmp_path / "model.torchscript.pt")
    assert scripted.classes == ["circle", "square", "triangle"] and scripted.engine.name == "torchscript"
    images = sorted((data / "circle").glob("*.png"))[:6]
    expected = [r["label"] for r in load_classifier(run, engine="torch").predict(images)]
    assert [r["label"] for r in scripted.predict(images)] == expected
    # compare measures an exported TorchScript file on its own engine, and reads no ONNX from it
    [row] = compare([tmp_path / "model.torchscript.pt"], runs=2)
    assert (row["engine"], row["params"], row["macs"]) == ("torchscript", None, None)
    assert row["size_mb"] == (tmp_path / "model.torchscript.pt").stat().st_size / 1e6
    with pytest.raises(UsageError, match="unknown export format\\(s\\) coreml; formats: onnx, torchscript, "
                                         "tflite, ncnn, rknn, maixcam, k210"):
        export(run, out=tmp_path / "x", formats="onnx,coreml")


def test_full_integer_tflite_export(shapes_run, tmp_path, monkeypatch):
    """The mechanics, on 9 shapes (where one image is 11 points); its accuracy is checked on flowers-mini below."""
    pytest.importorskip("ai_edge_quantizer", reason="int8 TFLite needs the [tflite] extra")
    _, run = shapes_run
    monkeypatch.setitem(exporter_module.LOSS_LIMITS, "int8", 1.0)
    card = export(run, out=tmp_path, formats="onnx,tflite", int8=True)
    entry = card["formats"]["tflite-int8"]
    assert card["verified"] and entry["file"] == "model.int8.tflite" and 0 <= entry["top1_agreement"] <= 1
    assert entry["size_mb"] < card["formats"]["tflite"]["size_mb"] / 3
    quantized = load_classifier(tmp_path / "model.int8.tflite")  # int8 in and out, scaled by the engine
    assert quantized.engine.input["dtype"] == np.int8 and quantized.classes == ["circle", "square", "triangle"]


def test_onnx_metadata_and_folded_batchnorm(shapes_run, tmp_path):
    _, run = shapes_run
    export(run, out=tmp_path)
    model = onnx.load(str(tmp_path / "model.onnx"))
    metadata = json.loads({p.key: p.value for p in model.metadata_props}["mobiclass"])
    assert metadata["classes"] == ["circle", "square", "triangle"] and metadata["padding"] == "tf"
    assert metadata["preprocessing"]["size"] == 64 and metadata["architecture"] == "efficientnet_lite0"
    assert "BatchNormalization" not in {node.op_type for node in model.graph.node}
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.slow
@pytest.mark.skipif(not FLOWERS.exists(), reason=f"flowers-mini not found under {ASSETS} (set MOBICLASS_ASSETS)")
def test_int8_export_on_flowers_keeps_accuracy(tmp_path):
    run = train(FLOWERS, tmp_path / "flowers", model="efficientnet_lite0", epochs=0, feature_views=0, workers=0,
                progress=False).run_dir  # the head on cached features: a real flowers classifier in seconds
    card = export(run, out=tmp_path / "out", int8=True, formats="onnx,tflite")
    int8 = card["formats"]["onnx-int8"]
    assert card["verified"] and card["verified_on"] == 100
    assert not exporter_module.exceeds(int8["accuracy_loss"], 0.01)  # one image of 100 at most, in floating point
    assert int8["size_mb"] < card["formats"]["onnx"]["size_mb"] / 3
    tflite_int8 = card["formats"]["tflite-int8"]  # full-integer TFLite, as verified: at most one point lost
    assert not exporter_module.exceeds(tflite_int8["accuracy_loss"], 0.01)  # one image of 100 at most
    assert tflite_int8["size_mb"] < card["formats"]["tflite"]["size_mb"] / 3
    assert load_classifier(tmp_path / "out" / "model.int8.onnx").classes == ["daisy", "dandelion", "roses",
                                                                            "sunflowers", "tulips"]


def test_a_loss_of_exactly_one_point_is_allowed():
    assert not exporter_module.exceeds(0.86 - 0.85, 0.01)  # one image in 100, computed in floating point
    assert exporter_module.exceeds(0.86 - 0.84, 0.01)


def test_failed_verification_says_so_and_suggests_the_fix(shapes_run, tmp_path):
    _, run = shapes_run
    hostile = hostile_to_int8(run, tmp_path / "hostile")  # its int8 file cannot keep the accuracy
    with pytest.raises(VerificationError, match=r"NOT verified: onnx-int8 \(int8\) loses .*% accuracy \(at most "
                                                r"11.1% allowed\)") as caught:
        export(hostile, out=tmp_path / "out", int8=True)
    assert advice(caught.value) == "; try --exclude-first-last to keep the first and last layers in float"
    card = json.loads((tmp_path / "out" / "model-card.json").read_text())
    assert card["verified"] is False and card["formats"]["onnx"]["verified"] is True
    assert card["formats"]["onnx-int8"]["verified"] is False


@pytest.mark.parametrize("name, engine", [("onnxruntime", OnnxRuntimeEngine), ("openvino", OpenVinoEngine)])
def test_onnx_engines_give_the_same_top1_on_real_photos(photos, name, engine):
    torch_classifier = load_classifier("efficientnet_lite0", engine="torch")
    exported = load_classifier("efficientnet_lite0", engine=name)
    assert type(exported.engine) is engine and exported.engine.module is None
    assert exported.engine.file.suffix == ".onnx" and exported.source == str(exported.engine.file)
    with pytest.raises(UsageError, match="runs on the .* engine and holds no PyTorch model"):
        _ = exported.module
    paths = list(photos.values())
    ours, theirs = torch_classifier.predict(paths), exported.predict(paths)
    assert [r["label"] for r in ours] == [r["label"] for r in theirs]
    assert ours[0]["label"] in CAT_LABELS
    assert max(abs(a["confidence"] - b["confidence"]) for a, b in zip(ours, theirs)) < 1e-3  # fp32, not bf16


def test_openvino_runs_a_batch_in_parallel_streams_with_the_logits_of_one_image_at_a_time(photos):
    exported = load_classifier("efficientnet_lite0", engine="openvino", threads=2)
    batch = np.stack([exported.prepare(path) for path in photos.values()])
    one_by_one = np.concatenate([exported.engine.run(batch[i:i + 1]) for i in range(len(batch))])
    assert exported.engine._streams is None  # single images use the latency model, all threads on one image
    together = exported.engine.run(batch)
    assert exported.engine._streams is not None and together.shape == (len(batch), 1000)
    np.testing.assert_allclose(together, one_by_one, rtol=0, atol=1e-4)
    assert [exported.classes[i] for i in together.argmax(1)] == [exported.classes[i] for i in one_by_one.argmax(1)]


def test_auto_engine_is_the_faster_one_as_measured_and_remembered(photos, tmp_path, monkeypatch):
    # A machine that has measured nothing yet: a server another test started remembers its own thread count.
    monkeypatch.setenv("MOBICLASS_HOME", str(tmp_path))
    chosen = load_classifier("efficientnet_lite0", engine="auto")
    [measured] = remembered_timings(chosen.engine.file)  # measured once: both engines timed, the faster kept
    assert set(measured["seconds"]) == {"onnxruntime", "openvino"}
    assert chosen.engine.name == measured["engine"] == min(measured["seconds"], key=measured["seconds"].get)
    again = load_classifier("efficientnet_lite0")  # the default engine; the remembered choice, not a new timing
    assert again.engine.name == chosen.engine.name and remembered_timings(again.engine.file) == [measured]
    assert again.predict([photos["coffee"]])[0]["label"] == "espresso"


def test_predict_cli_with_an_onnx_file(shapes_run, tmp_path, capsys):
    data, run = shapes_run
    export(run, out=tmp_path)
    assert main(["predict", str(data / "square"), "--model", str(tmp_path / "model.onnx"), "--format", "json"]) == 0
    images = sorted(str(p) for p in (data / "square").glob("*.png"))
    expected = [r["label"] for r in load_classifier(run, engine="torch").predict(images)]
    results = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in results] == images and [r["label"] for r in results] == expected


def test_bad_model_files_give_clear_errors(tmp_path):
    (tmp_path / "broken.onnx").write_bytes(b"definitely not protobuf")
    with pytest.raises(WeightsError, match="broken.onnx is not a usable ONNX model"):
        load_classifier(tmp_path / "broken.onnx")
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3])])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]),
              str(tmp_path / "plain.onnx"))
    with pytest.raises(WeightsError, match="has no mobiclass metadata"):
        load_classifier(tmp_path / "plain.onnx")
    with pytest.raises(UsageError, match="an .onnx file runs on the onnxruntime or openvino engine, not torch"):
        load_classifier(tmp_path / "plain.onnx", engine="torch")
    with pytest.raises(UsageError, match="no run folder with a split .* no calibration images") as caught:
        export("efficientnet_lite0", out=tmp_path / "named")
    assert advice(caught.value) == "; pass --calibration DATA (a folder of class folders)"
