"""The doctor's HTML report: one self-contained page (thumbnails inline, no script, nothing fetched) with each
finding next to the photo it is about."""
from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

from PIL import Image

from ..files import atomic_write_text

SHOWN = 200  # findings shown per section (issues.json holds them all)
STYLE = ("body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1d2430}table{border-collapse:collapse}"
         "td,th{border:1px solid #d9dee6;padding:.3rem .5rem;text-align:left;vertical-align:middle}"
         "img{width:96px;height:96px;object-fit:cover;border-radius:4px}.leak{color:#c0392b;font-weight:600}"
         ".muted{color:#5d6b7e}.group{display:flex;gap:.4rem;flex-wrap:wrap}.group figure{margin:0;font-size:.8rem}")


def thumbnail(path: str, side: int = 96) -> str:
    """A small JPEG of `path` as a data URI ('' when it cannot be read)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (2 * side, 2 * side))
            image = image.convert("RGB")
            image.thumbnail((side, side))
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=80)
    except Exception:  # noqa: BLE001 - a report shows what it can; the finding itself is in issues.json
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(path: str) -> str:
    return f'<img src="{thumbnail(path)}" alt="{escape(Path(path).name)}" title="{escape(path)}">'


def _table(header: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows[:SHOWN])
    more = f'<p class="muted">and {len(rows) - SHOWN} more (issues.json)</p>' if len(rows) > SHOWN else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def write_html(path: Path, result: dict) -> None:
    counts = result["counts"]
    classes = _table(["class", "train", "val"], [[escape(c), str(counts["train"][c]), str(counts["val"][c])]
                                                 for c in result["classes"]], "")
    labels = _table(["photo", "split", "given", "suggested", "score"], [
        [_img(s["path"]), s["split"], escape(s["given"]), f"<strong>{escape(s['suggested'])}</strong>",
         f"{s['score']:.2f}"] for s in result["label_issues"]], "No suspected label error.")
    groups = _table(["photos", "kind", "across train and val"], [
        ['<div class="group">' + "".join(f"<figure>{_img(p)}<figcaption>{s}</figcaption></figure>"
                                         for p, s in zip(g["paths"], g["splits"])) + "</div>", g["kind"],
         '<span class="leak">yes: a leak</span>' if g["leak"] else "no"] for g in result["duplicates"]],
        "No duplicates.")
    unusual = _table(["photo", "split", "class", "similarity to its 5 nearest"], [
        [_img(o["path"]), o["split"], escape(o["class"]), f"{o['similarity']:.2f} (typical: above {o['fence']:.2f})"]
        for o in result["outliers"]], "No outlier.")
    files = _table(["photo", "what"], [[_img(f["path"]), escape("; ".join(f["problems"]))]
                                       for f in result["image_problems"]], "No odd file.")
    bad = _table(["file", "why"], [[escape(b["path"]), escape(b["error"])] for b in result["unreadable"]],
                 "Every file is a usable image.")
    leaks = sum(g["leak"] for g in result["duplicates"])
    atomic_write_text(path, f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>mobiclass doctor: {escape(result['data'])}</title><style>{STYLE}</style></head><body>
<h1>Data doctor: {escape(result['data'])}</h1>
<p>{result['photos']} photos in {len(result['classes'])} classes, looked at with {escape(result['backbone'])};
largest over smallest training class: {result['imbalance']}. Nothing was changed: review <code>fix-list.csv</code>
and apply it to a copy with <code>mobiclass doctor DATA --fix-list fix-list.csv --fixed NEW_FOLDER</code>.</p>
{classes}
<h2>Suspected label errors ({len(result['label_issues'])})</h2>
<p class="muted">Out-of-fold probabilities (a classifier that never saw the photo) and cleanlab; the score is how
unlikely the given label looks, most suspect first.</p>{labels}
<h2>Duplicates ({len(result['duplicates'])} groups, {leaks} across train and val)</h2>
<p class="muted">A photo in both train and val makes the validation figures optimistic: the training copy goes.</p>
{groups}
<h2>Outliers ({len(result['outliers'])})</h2><p class="muted">Unlike any other photo of the set.</p>{unusual}
<h2>Odd files ({len(result['image_problems'])})</h2>{files}
<h2>Unreadable files ({len(result['unreadable'])})</h2>{bad}
</body></html>
""")
