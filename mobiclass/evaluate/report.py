"""One self-contained HTML page (images embedded) that a person can open and read."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from ..files import atomic_write_text


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" data-file="{path.name}">' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_html_report(path: Path, title: str, report: dict, plots: dict[str, Path], mistakes: list[dict],
                      context: dict, tables: dict[str, tuple[list[str], list[list]]] | None = None) -> Path:
    """The page; `tables` adds titled tables ({title: (header, rows)}) after the plots (training config, data)."""
    summary = [("images", report["count"]), ("accuracy", f"{report['accuracy']:.4f}"),
               ("top-5 accuracy", f"{report['top5_accuracy']:.4f}"), ("macro F1", f"{report['macro_f1']:.4f}"),
               ("weighted F1", f"{report['weighted_f1']:.4f}"), ("log loss", f"{report['log_loss']:.4f}"),
               ("expected calibration error", f"{report['calibration']['ece']:.4f}"),
               *list(context.items())]
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary)
    per_class = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>" for name, m in report["per_class"].items())
    wrong = "".join(
        f"<tr><td>{html.escape(m['path'])}</td><td>{html.escape(m['true'])}</td><td>{html.escape(m['predicted'])}</td>"
        f"<td>{m['confidence']:.3f}</td></tr>" for m in mistakes) or '<tr><td colspan="4">none</td></tr>'
    figures = "".join(_image(p, caption) for caption, p in plots.items())
    extra = "".join(f"<h2>{html.escape(name)}</h2>{_table(header, body)}" for name, (header, body) in
                    (tables or {}).items())
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; }} th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; }}
th {{ background: #f4f4f4; text-align: left; }} td {{ font-variant-numeric: tabular-nums; }}
figure {{ display: inline-block; margin: .5rem; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<h2>Summary</h2><table>{rows}</table>
<h2>Per class</h2>
<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{per_class}
<tr><th>macro avg</th><td>{report['macro_precision']:.3f}</td><td>{report['macro_recall']:.3f}</td>
<td>{report['macro_f1']:.3f}</td><td>{report['count']}</td></tr>
<tr><th>weighted avg</th><td>{report['weighted_precision']:.3f}</td><td>{report['weighted_recall']:.3f}</td>
<td>{report['weighted_f1']:.3f}</td><td>{report['count']}</td></tr></table>
<h2>Plots</h2>{figures}
<h2>Most confidently wrong</h2>
<table><tr><th>image</th><th>true</th><th>predicted</th><th>confidence</th></tr>{wrong}</table>
{extra}
</body></html>
"""
    atomic_write_text(path, page)
    return path
