"""Board bundles: the graph converters get, the bundle files, the preprocessing of each board program (compared
with ours), the ncnn round trip; the vendor toolchains (hundreds of MB each) with MOBICLASS_TEST_BOARDS=1."""
import configparser
import json
import importlib.util
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from helpers import QUICK, draw_shapes, mobiclass
from mobiclass import UsageError, load_classifier
from mobiclass.cli import advice
from mobiclass.data import Preprocessing
from mobiclass.export import VerificationError, export
from mobiclass.export.board_graph import export_board_onnx
from mobiclass.export.boards import pixel_scaling
from mobiclass.export.bundles import write
from mobiclass.export.exporter import check_fits
from mobiclass.export.toolchains import compiler_memory
from mobiclass.models import create_model
from mobiclass.model_info import ModelInfo
from mobiclass.runtime import Classifier
from mobiclass.runtime.engines import TorchEngine
from mobiclass.targets import Recipe, estimate, get_target
from mobiclass.train import train

BOARDS = os.environ.get("MOBICLASS_TEST_BOARDS") == "1"
needs_toolchains = pytest.mark.skipif(not BOARDS, reason="board toolchains (hundreds of MB each): run make "
                                                         "test-boards, or set MOBICLASS_TEST_BOARDS=1")


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"board_{path.parent.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classifier_of(width: float, size: int, padding: str = "tf") -> Classifier:
    model = create_model("mobilenet_v2", num_classes=5, width_mult=width, padding=padding)
    return Classifier(TorchEngine(model), ModelInfo(architecture="mobilenet_v2", classes=list("abcde"),
                                                    preprocessing=Preprocessing.for_size(size, 1.0), width_mult=width,
                                                    padding=padding))


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_board_graph_is_plain_and_gives_pytorchs_outputs(name, tmp_path):
    classifier = load_classifier(name, engine="torch")  # both use TF "SAME" padding
    graph = onnx.load(str(export_board_onnx(classifier, tmp_path / "board.onnx")))
    assert {node.op_type for node in graph.graph.node} == {"Add", "Clip", "Conv", "Gemm", "ReduceMean"}
    assert [(o.domain, o.version) for o in graph.opset_import] == [("", 13)]
    assert [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 224, 224]
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)
    ours = ort.InferenceSession(str(tmp_path / "board.onnx"), providers=["CPUExecutionProvider"]).run(None, {
        "images": x})[0]
    assert np.abs(ours - classifier.engine.run(x)).max() < 1e-4


def test_k210_memory_check_matches_what_nncase_compiled():
    """Figures measured with nncase 1.9: which MobileNetV2 builds fit the KPU (its target's RAM budget)."""
    k210 = get_target("k210")
    ram = {(w, s): estimate(k210, Recipe("mobilenet_v2", w, s), 5).ram_kb
           for w, s in [(1.0, 128), (0.5, 224), (0.35, 224), (1.0, 160), (1.0, 224), (0.75, 224)]}
    assert (ram[(1.0, 128)], ram[(0.5, 224)], ram[(1.0, 160)]) == (491.52, 752.64, 768.0)
    for fits in [(1.0, 128), (0.5, 224), (0.35, 224)]:
        check_fits(k210, classifier_of(*fits))
    for too_big in [(1.0, 160), (1.0, 224), (0.75, 224)]:
        with pytest.raises(UsageError, match="does not fit k210: its largest layer needs .* kB of RAM at uint8; k210 "
                                             "has 760 kB$") as caught:
            check_fits(k210, classifier_of(*too_big))
        assert advice(caught.value) == "; train a model for it: mobiclass train DATA --target k210"


def test_bundles_carry_labels_metadata_and_the_same_preprocessing(tmp_path, photos):
    classifier = load_classifier("mobilenet_v2", engine="torch")
    mean, std = pixel_scaling(classifier.preprocessing)
    image = Image.open(photos["chelsea"]).convert("RGB")
    ours = np.asarray(classifier.preprocessing.crop(image), dtype=np.uint8)
    for board in ("ncnn", "rknn", "maixcam", "k210"):
        folder = tmp_path / board
        folder.mkdir()
        files = write(board, classifier, folder, [], "int8")
        assert (folder / "labels.txt").read_text().splitlines() == classifier.classes
        script = {"ncnn": "classify.py", "rknn": "classify.py", "maixcam": "main.py", "k210": "main.py"}[board]
        expected = sorted(["README.md", "labels.txt", script, *(["model.mud"] if board == "maixcam" else [])])
        assert files == expected, board
        compile((folder / script).read_text(), script, "exec")  # valid Python for the board
    for board in ("ncnn", "rknn"):  # the board programs crop exactly as mobiclass does
        module = load_script(tmp_path / board / "classify.py")
        assert np.array_equal(module.preprocess(image), ours), board
    ncnn_program = load_script(tmp_path / "ncnn" / "classify.py")
    assert np.allclose(ncnn_program.MEAN, mean) and np.allclose(ncnn_program.NORM, [1 / s for s in std])
    mud = configparser.ConfigParser()
    mud.read(tmp_path / "maixcam" / "model.mud")
    assert dict(mud["basic"]) == {"type": "cvimodel", "model": "model.cvimodel"}
    assert mud["extra"]["labels"] == "labels.txt" and mud["extra"]["model_type"] == "classifier"
    pixels = ours.astype(np.float32)  # MaixPy computes (pixel - mean) * scale: the same numbers as ours
    mud_mean = np.array([float(v) for v in mud["extra"]["mean"].split(",")], np.float32)
    mud_scale = np.array([float(v) for v in mud["extra"]["scale"].split(",")], np.float32)
    assert np.allclose(((pixels - mud_mean) * mud_scale).transpose(2, 0, 1), classifier.preprocessing(image),
                       atol=1e-5)
    assert f"LABELS = {classifier.classes[:3]}"[:-1] in (tmp_path / "k210" / "main.py").read_text()


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("boards")
    data = draw_shapes(root / "shapes", per_class=16)
    options = {**QUICK, "model": "mobilenet_v2", "epochs": 1}
    return data, train(data, root / "run", **options).run_dir


@pytest.mark.slow  # the studio journey and test_commands export and verify ncnn bundles in make test
def test_ncnn_bundle_round_trip(small_run, tmp_path, photos):
    data, run = small_run
    card = export(run, out=tmp_path, formats="ncnn")
    entry = card["formats"]["ncnn"]
    assert card["verified"] and entry["precision"] == "fp32" and entry["top1_agreement"] == 1.0
    assert entry["files"] == ["README.md", "classify.py", "labels.txt", "model.ncnn.bin", "model.ncnn.param"]
    assert sorted(p.name for p in (tmp_path / "ncnn").iterdir()) == sorted([*entry["files"], "model-card.json"])
    assert entry["simulator"] == "ncnn runtime (x86)" and entry["conversion_seconds"] > 0
    # the board program, run here, gives the probabilities mobiclass gives
    import ncnn

    program = load_script(tmp_path / "ncnn" / "classify.py")
    net = ncnn.Net()
    net.load_param(str(tmp_path / "ncnn" / "model.ncnn.param"))
    net.load_model(str(tmp_path / "ncnn" / "model.ncnn.bin"))
    classifier = load_classifier(run, engine="torch")
    for path in sorted((data / "square").glob("*.png"))[:4]:
        image = Image.open(path)
        theirs = program.classify(program.preprocess(image), net)
        assert np.allclose(theirs, classifier.predict_images([image.convert("RGB")])[0], atol=1e-4)
    half = export(run, out=tmp_path / "half", formats="ncnn", half=True)["formats"]["ncnn"]
    assert half["precision"] == "fp16" and half["size_mb"] < 0.6 * entry["size_mb"]


def test_board_options_are_checked(small_run, tmp_path):
    _, run = small_run
    with pytest.raises(UsageError, match="chip must be one of rk3588, rk3566, rk3568, got 'rk9999'"):
        export(run, out=tmp_path, formats="rknn", chip="rk9999")
    with pytest.raises(UsageError, match="k210 has no half-precision build"):
        export(run, out=tmp_path, formats="k210", half=True)


@needs_toolchains
@pytest.mark.parametrize("board, precision", [("rknn", "int8"), ("rknn", "fp16"), ("k210", "uint8"),
                                              ("maixcam", "int8"), ("maixcam", "bf16")])
def test_vendor_toolchain_bundle_verified_on_its_simulator(small_run, tmp_path, board, precision):
    _, run = small_run
    try:
        card = export(run, out=tmp_path, formats=board, half=precision in ("fp16", "bf16"))
    except VerificationError as exc:
        pytest.fail(str(exc))
    entry = card["formats"][board]
    model_file = {"rknn": "model.rknn", "k210": "model.kmodel", "maixcam": "model.cvimodel"}[board]
    allowed = 0.01 if precision in ("fp16", "bf16") else 0.02
    assert card["verified"] and entry["precision"] == precision and entry["accuracy_loss"] <= allowed
    assert model_file in entry["files"] and sorted(p.name for p in (tmp_path / board).iterdir()) == \
        sorted([*entry["files"], "model-card.json"])
    assert entry["simulator_ms_per_image"] > 0 and 0 < entry["size_mb"] < 10


@needs_toolchains
def test_train_for_the_k210_then_export_for_it_with_no_other_option(tmp_path):
    data = draw_shapes(tmp_path / "shapes", per_class=8)
    quick = ["--head-epochs", "5", "--epochs", "1", "--unfreeze", "2", "--workers", "0", "--quiet"]
    assert mobiclass("train", data, "--target", "k210", "--out", tmp_path / "run", *quick, cwd=tmp_path).returncode == 0
    done = mobiclass("export", "--model", tmp_path / "run", "--target", "k210", cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    card = json.loads((tmp_path / "run" / "export" / "k210" / "model-card.json").read_text())
    entry = card["formats"][card["targets"]["k210"]]
    assert (entry["precision"], entry["verified"], entry["target"]) == ("uint8", True, "k210")
    assert entry["latency_ms"] > 0
    assert "model.kmodel" in entry["files"] and entry["precision_reason"].startswith("uint8 kept: uint8 loses")
    # nncase 1.9 writes a 3.8 MB kmodel for these 2.2 M weights (1.7 bytes each): the estimate knows it. Its own
    # memory report replaces the RAM estimate; TF padding (the offline weights) needs 3.5 MB of working memory.
    assert 3_700 < entry["flash_kb"] < 3_900 and entry["ram_source"].startswith("reported by the compiler")
    padding = json.loads((tmp_path / "run" / "model.json").read_text())["padding"]
    assert entry["fits"] is (padding == "torch"), entry
    if padding == "tf":
        assert entry["ram_kb"] > 3_500 and "TF \"SAME\" padding" in entry["fit_note"]


def test_a_compilers_memory_report_is_read():
    """nncase 1.9's summary, as it printed it for MobileNetV2 1.0 at 128 px with TF padding; tpu-mlir 1.30's
    model_tool --info for a 224 px int8 cvimodel."""
    log = ("SUMMARY\nINPUTS\n0\tnew_input\tu8[1,128,128,3]\n\nMEMORY USAGES\n.input\t  48.00 KB\t(49152 B)\n"
           ".output\t  20.00 B\t(20 B)\n.data\t   3.50 MB\t(3670016 B)\nMODEL\t   3.62 MB\t(3790704 B)\n"
           "TOTAL\t   7.16 MB\t(7509892 B)\n\nMOBICLASS-ANSWER {}\n")
    assert compiler_memory(log) == {"input": 49152, "output": 20, "data": 3670016, "MODEL": 3790704,
                                    "TOTAL": 7509892}
    assert compiler_memory("no summary") == {}
    tpu_mlir = ("For cv181x chip ONLY\nCviModel Need ION Memory Size: (3.87 MB)\n\nSections:\n"
                "ID   TYPE      NAME                     SIZE        OFFSET      MD5\n"
                "000  weight    weight                   2860000     0           756ed46a1d595474f1507320659dbc01\n"
                "001  cmdbuf    subfunc_0                68952       2860000     0c5892d2c08a44127bb8e82a3bfbcde4\n")
    assert compiler_memory(tpu_mlir) == {"TOTAL": 4057989, "MODEL": 2928952, "data": 1129037}
