"""Better data, as a user runs it: `mobiclass doctor` on real fruit photos with planted label errors, a leaked
duplicate, an outsider, a grey photo and a broken file; its fix list applied to a copy; `mobiclass select` picking
photos to label; `mobiclass train --unlabeled` without a teacher (self-training)."""
from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata

from helpers import MOBICLASS, QUICK
from helpers import mobiclass as installed
from mobiclass.curation import select
from mobiclass.datasets import fruits
from mobiclass.errors import UsageError

CLASSES = ("apple", "kiwi", "orange", "pear", "strawberry")
FLIPS = {"apple": "pear", "kiwi": "orange", "orange": "apple", "strawberry": "kiwi"}  # true class -> given label


def mobiclass(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mobiclass", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> dict:
    """12 training and 4 validation fruits a class, then the mistakes users make."""
    root = tmp_path_factory.mktemp("messy") / "fruits"
    for split, count in (("train", 12), ("val", 4)):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for photo in sorted((fruits() / split / name).iterdir())[:count]:
                shutil.copy(photo, root / split / name / photo.name)
    flipped = {}
    for true, given in FLIPS.items():  # a photo of `true` filed under `given`
        photo = sorted((root / "train" / true).iterdir())[0]
        moved = root / "train" / given / f"was-{true}-{photo.name}"
        flipped[str(moved)] = true
        photo.rename(moved)
    leaked_from = sorted((root / "val" / "kiwi").iterdir())[0]  # a val photo copied into train, resized, re-encoded
    copy = Image.open(leaked_from).convert("RGB").resize((80, 80))
    copy.save(root / "train" / "kiwi" / "kiwi-copy.jpg", quality=70)
    Image.fromarray(skdata.astronaut()).save(root / "train" / "apple" / "astronaut.jpg")
    Image.open(sorted((root / "train" / "pear").iterdir())[-1]).convert("L").save(root / "train" / "pear" / "grey.png")
    (root / "train" / "orange" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return {"root": root, "flipped": flipped, "leak": {str(leaked_from), str(root / "train/kiwi/kiwi-copy.jpg")}}


@pytest.fixture(scope="module")
def examined(messy, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("doctor") / "report"
    done = mobiclass("doctor", str(messy["root"]), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return {"out": out, "stdout": done.stdout, "issues": json.loads((out / "issues.json").read_text())}


def test_the_doctor_finds_the_planted_label_errors_with_their_true_class(messy, examined):
    issues = examined["issues"]["label_issues"]
    suggested = {i["path"]: i["suggested"] for i in issues}
    assert {path: suggested.get(path) for path in messy["flipped"]} == messy["flipped"]
    assert [i["score"] for i in issues] == sorted((i["score"] for i in issues), reverse=True)  # most suspect first
    assert len(issues) <= len(messy["flipped"]) + 2, issues  # and little else
    assert "suspected label errors" in examined["stdout"] and "report.html" in examined["stdout"]


def test_the_doctor_finds_the_leak_the_outsider_the_grey_photo_and_the_broken_file(messy, examined):
    issues = examined["issues"]
    # The planted copy is found with its original. Fruits-360 photos are frames of one fruit turning, so its
    # validation frames have near copies in training too: the doctor says so (that dataset's known leak).
    copy, original = sorted(messy["leak"], key=lambda p: "/val/" in p)
    group = next(g for g in issues["duplicates"] if copy in g["paths"])
    assert group["leak"] and group["kind"] == "near" and original in group["paths"]
    assert sorted([group["paths"].index(copy), group["paths"].index(original)]) in group["pairs"]
    assert issues["outliers"][0]["path"].endswith("train/apple/astronaut.jpg")
    assert {Path(f["path"]).name: f["problems"] for f in issues["image_problems"]}["grey.png"] == ["greyscale"]
    assert [Path(b["path"]).name for b in issues["unreadable"]] == ["broken.jpg"]
    assert issues["counts"]["val"] == dict.fromkeys(CLASSES, 4)
    report = (examined["out"] / "report.html").read_text()
    assert report.count("data:image/jpeg;base64,") >= 8 and "yes: a leak" in report and "http" not in report


def test_the_fix_list_proposes_moves_and_training_side_deletions_and_applies_to_a_copy(messy, examined, tmp_path):
    with open(examined["out"] / "fix-list.csv", newline="") as f:
        proposals = list(csv.DictReader(f))
    deleted = {p["path"]: p["why"] for p in proposals if p["action"] == "delete"}
    copy, original = sorted(messy["leak"], key=lambda p: "/val/" in p)
    assert deleted[copy].startswith("near copy of ") and deleted[copy].endswith("(it leaks into val)")
    assert all("/val/" not in path for path in deleted)  # a validation photo is never proposed for removal
    assert {p["path"]: p["class"] for p in proposals if p["action"] == "move"} == messy["flipped"]
    before = sorted(str(p) for p in messy["root"].rglob("*"))
    done = mobiclass("doctor", str(messy["root"]), "--fix-list", str(examined["out"] / "fix-list.csv"),
                     "--fixed", str(tmp_path / "fixed"))
    assert done.returncode == 0, done.stderr
    assert sorted(str(p) for p in messy["root"].rglob("*")) == before  # the original is untouched
    for path, true in messy["flipped"].items():
        assert (tmp_path / "fixed" / "train" / true / Path(path).name).is_file()
    assert not (tmp_path / "fixed" / "train" / "kiwi" / "kiwi-copy.jpg").exists()
    again = mobiclass("doctor", str(messy["root"]), "--fix-list", str(examined["out"] / "fix-list.csv"),
                      "--fixed", str(tmp_path / "fixed"))
    assert again.returncode == 2 and "is not empty: the fixed copy needs a new folder" in again.stderr


def test_a_manifest_is_examined_and_fixed_into_a_new_manifest_beside_it(messy):
    root = messy["root"]
    manifest = root / "photos.csv"  # relative paths, as a person writes them; broken.jpg left out
    rows = [[str(p.relative_to(root)), p.parent.name, p.parent.parent.name] for p in sorted(root.rglob("*.*"))
            if p.suffix != ".csv" and p.name != "broken.jpg"]
    manifest.write_text("path,label,split,note\n" + "".join(f"{p},{c},{s},seen\n" for p, c, s in rows))
    try:
        examined = installed("doctor", "photos.csv", "--out", "report", cwd=root)
        assert examined.returncode == 0, examined.stderr
        assert "--fix-list report/fix-list.csv --fixed photos-fixed.csv" in examined.stdout
        fixed = installed("doctor", "photos.csv", "--fix-list", "report/fix-list.csv", "--fixed", "photos-fixed.csv",
                          cwd=root)
        assert fixed.returncode == 0, fixed.stderr
        with open(root / "photos-fixed.csv", newline="") as f:
            after = {row["path"]: row for row in csv.DictReader(f)}
        for path, true in messy["flipped"].items():  # relabelled in place, every other column kept
            assert after[str(Path(path).relative_to(root))] == {"path": str(Path(path).relative_to(root)),
                                                                 "label": true, "split": "train", "note": "seen"}
        assert "train/kiwi/kiwi-copy.jpg" not in after  # the training side of the leak is gone
        assert all(after[p]["split"] == "val" for p in after if p.startswith("val/"))
        assert len([p for p in after if p.startswith("val/")]) == 4 * len(CLASSES)  # validation photos all stay
        assert manifest.read_text().count("\n") == len(rows) + 1  # the original is untouched
        elsewhere = installed("doctor", "photos.csv", "--fix-list", "report/fix-list.csv", "--fixed",
                              "report/fixed.csv", cwd=root)
        assert elsewhere.returncode == 2 and "the fixed copy of a manifest is a new .csv beside it" in elsewhere.stderr
    finally:
        for made in (manifest, root / "photos-fixed.csv"):
            made.unlink(missing_ok=True)
        shutil.rmtree(root / "report", ignore_errors=True)


def test_bad_input_to_doctor_and_select_is_refused_clearly(messy, tmp_path):
    missing = mobiclass("doctor", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "data not found" in missing.stderr and "Traceback" not in missing.stderr
    not_a_run = mobiclass("select", str(messy["root"]), "--model", "efficientnet_lite0", "--count", "2")
    assert not_a_run.returncode == 2 and "select needs a run folder" in not_a_run.stderr
    no_model = mobiclass("select", str(messy["root"]), "--count", "2", "--strategy", "uncertainty")
    assert no_model.returncode == 2 and "give --model RUN, or use --strategy typical" in no_model.stderr
    wrong = tmp_path / "wrong.csv"  # "train" is a split folder, not a class
    wrong.write_text(f"path,action,class\n{next((messy['root'] / 'train' / 'kiwi').iterdir())},move,train\n")
    refused = mobiclass("doctor", str(messy["root"]), "--fix-list", str(wrong), "--fixed", str(tmp_path / "out"))
    assert refused.returncode == 2 and "move needs the class to move to" in refused.stderr
    assert not (tmp_path / "out").exists()
    gone = tmp_path / "gone.csv"  # reviewed, then the photo was removed: no decision is silently dropped
    gone.write_text(f"path,action,class\n{messy['root'] / 'train' / 'kiwi' / 'renamed.jpg'},move,pear\n")
    stale = mobiclass("doctor", str(messy["root"]), "--fix-list", str(gone), "--fixed", str(tmp_path / "out"))
    assert stale.returncode == 2 and "gone.csv line 2:" in stale.stderr and "run doctor again" in stale.stderr
    for name, content in (("notes.csv", b"my review notes\n"), ("binary.csv", b"\xff\xfe\x00\x01garbage")):
        (tmp_path / name).write_bytes(content)
        refused = mobiclass("doctor", str(messy["root"]), "--fix-list", str(tmp_path / name), "--fixed",
                            str(tmp_path / "out"))
        assert refused.returncode == 2 and f"{name} is not a fix list" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    assert not (tmp_path / "out").exists()
    lopsided = mobiclass("doctor", str(messy["root"]), "--fix-list", "x.csv")
    assert lopsided.returncode == 2 and "--fix-list and --fixed go together" in lopsided.stderr


def test_select_picks_the_photos_worth_labelling_and_self_training_needs_no_teacher(messy, tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for name in CLASSES:
        for photo in sorted((fruits() / "val" / name).iterdir())[4:10]:
            shutil.copy(photo, pool / f"{name}-{photo.name}")
    small = tmp_path / "small"
    for name in CLASSES:
        shutil.copytree(fruits() / "train" / name, small / name, ignore=lambda d, files: sorted(files)[6:])
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in QUICK.items() if k not in ("progress", "workers")]
    command = ["train", "small", "--unlabeled", "pool", *flags, "--self-training-rounds", "2"]  # as typed, relative
    trained = installed(*command, "--out", "run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "run" / "self_training.json").read_text())
    assert summary["pool"] == 30 and summary["rounds"][0]["round"] == 0 and len(summary["rounds"]) >= 2
    assert summary["rounds"][1]["pseudo_labelled"] > 0
    with open(tmp_path / "run" / "self-training" / "data-1.csv", newline="") as f:  # round 1 learnt from these
        data = list(csv.DictReader(f))
    taught = [row for row in data if Path(row["path"]).parent == pool]
    assert len(taught) == summary["rounds"][1]["pseudo_labelled"] and {r["split"] for r in taught} == {"train"}
    assert all(Path(r["path"]).name.startswith(f"{r['label']}-") for r in taught)  # each under its own fruit
    reports = [json.loads((tmp_path / "run" / "self-training" / f"round-{k}" / "data_report.json").read_text())
               for k in (0, 1)]
    learnt = [sum(report["counts"]["train"].values()) for report in reports]
    assert learnt[1] == learnt[0] + len(taught) and reports[1]["bad_files"] == []  # every one really learnt from
    per_class = summary["rounds"][1]["per_class"]
    assert sum(per_class.values()) == len(taught) and set(per_class) <= set(CLASSES)
    assert per_class == dict.fromkeys(CLASSES, 1)  # round 1: the surest 20 % of 30 photos, as many per class
    assert [r["share"] for r in summary["rounds"][1:]] == [0.2, 0.4][:len(summary["rounds"]) - 1]
    split = json.loads((tmp_path / "run" / "self-training" / "round-0" / "split.json").read_text())
    assert sorted(r["path"] for r in data if r["split"] == "val") == sorted(str(Path(p).resolve()) for p, _ in
                                                                              split["val"])
    # The same command again: refused, nothing reused or lost; --overwrite trains anew.
    first = (tmp_path / "run" / "self-training" / "round-0" / "model.safetensors").stat().st_mtime_ns
    again = installed(*command, "--out", "run", cwd=tmp_path)
    assert again.returncode == 2
    assert "run already exists; pass --overwrite to replace it, or --resume run to continue it" in again.stderr
    assert (tmp_path / "run" / "self-training" / "round-0" / "model.safetensors").stat().st_mtime_ns == first
    replaced = installed(*command, "--out", "run", "--overwrite", cwd=tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert (tmp_path / "run" / "self-training" / "round-0" / "model.safetensors").stat().st_mtime_ns != first
    assert json.loads((tmp_path / "run" / "self_training.json").read_text())["rounds"] == summary["rounds"]
    # Ctrl-C once round 1 has begun: the command names the folder, and --resume (from elsewhere) ends the work.
    stopped = subprocess.Popen([MOBICLASS, *command, "--out", "stopped"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    round_1 = tmp_path / "stopped" / "self-training" / "round-1"
    while not round_1.exists() and stopped.poll() is None:
        time.sleep(0.02)
    stopped.send_signal(signal.SIGINT)
    said = stopped.communicate(timeout=120)[0]
    assert stopped.returncode == 130 and "interrupted; continue with: mobiclass train --resume stopped" in said, said
    assert not (tmp_path / "stopped" / "self_training.json").exists()
    first = (tmp_path / "stopped" / "self-training" / "round-0" / "model.safetensors").stat().st_mtime_ns
    resumed = installed("train", "--resume", tmp_path / "stopped", cwd=small)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "stopped" / "self-training" / "round-0" / "model.safetensors").stat().st_mtime_ns == first
    assert json.loads((tmp_path / "stopped" / "self_training.json").read_text())["rounds"] == summary["rounds"]
    done = mobiclass("select", str(pool), "--model", str(tmp_path / "run"), "--count", "5", "--strategy",
                     "uncertainty", "--out", str(tmp_path / "picks.csv"))
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "picks.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "path" and len(rows) == 6 and all(Path(r[0]).parent == pool for r in rows[1:])
    margins = [float(r[1]) for r in rows[1:]]
    assert margins == sorted(margins)  # least certain first
    spread = select(tmp_path / "run", pool, 5, "diverse")  # the least certain of 5 k-means groups of the 15
    margins = [p["margin"] for p in spread]
    assert len({p["path"] for p in spread}) == 5 and margins == sorted(margins)
    assert spread[0]["path"] == rows[1][0]  # the least certain photo of all leads both lists
    cold = mobiclass("select", str(pool), "--count", "5", "--format", "json")  # before any model: typical photos
    assert cold.returncode == 0, cold.stderr
    assert sorted(Path(p["path"]).name.split("-")[0] for p in json.loads(cold.stdout)) == sorted(CLASSES)
    listed = mobiclass("select", str(pool), "--model", str(tmp_path / "run"), "--count", "3")
    assert len(listed.stdout.split()) == 3 and all(Path(p).parent == pool for p in listed.stdout.split())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.jpg").write_text("not a photo")
    done = mobiclass("select", str(tmp_path / "notes"), "--model", str(tmp_path / "run"), "--count", "2")
    assert done.returncode == 2 and done.stderr.startswith(
        f"error: none of the 1 files in {tmp_path / 'notes'} is a readable image, e.g. "), done.stderr
    # A list of photos: relative lines are read from the list's folder (as a CSV manifest's); a missing one is said.
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "pool.txt"
    listing.write_text("".join(f"../pool/{p.name}\n" for p in sorted(pool.iterdir())[:4]) + "../pool/gone.jpg\n")
    from_list = installed("select", "lists/pool.txt", "--model", "run", "--count", "2", cwd=tmp_path)
    assert from_list.returncode == 0, from_list.stderr
    assert [Path(p).parent for p in from_list.stdout.split()] == [Path("pool")] * 2
    assert "skipped 1 unreadable file(s) of the pool, e.g. pool/gone.jpg: no such file" in from_list.stderr
    listing.write_text("pool/gone.jpg\n")
    nothing = installed("select", "lists/pool.txt", "--model", "run", "--count", "2", cwd=tmp_path)
    assert nothing.returncode == 2 and "none of the 1 files listed in lists/pool.txt" in nothing.stderr
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no readable image"):
        select(tmp_path / "run", tmp_path / "empty", 2)
