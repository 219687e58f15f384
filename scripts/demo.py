"""`make demo`: the main job end to end on real photos, with no network needed.

Classifies scikit-image's sample photos with pretrained ImageNet MobileNetV2 (torchvision's
download when online, else the shared TFLite weights imported) and EfficientNet-Lite0 (installed
package), and prints both top-5 lists side by side.
"""
from __future__ import annotations

import sys

from PIL import Image
from rich.console import Console
from rich.table import Table
from skimage import data

from mobiclass import MobiclassError, load_classifier

PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
MODELS = ("mobilenet_v2", "efficientnet_lite0")


def main() -> int:
    console = Console()
    images = {name: Image.fromarray(getattr(data, name)()) for name in PHOTOS}
    columns = {}
    for model in MODELS:
        try:
            classifier = load_classifier(model)
        except MobiclassError as exc:
            console.print(f"[yellow]{model} skipped:[/yellow] {exc}")
            continue
        probabilities = classifier.predict_images(images.values())
        origin = classifier.source.replace("\\", "/").rsplit("/", 1)[-1].split(":")[0]
        columns[f"{model}\n[dim]{origin}[/dim]"] = [
            "\n".join(f"{p[i]:.2f} {classifier.classes[i]}" for i in p.argsort()[::-1][:5]) for p in probabilities]
    if not columns:
        return 1
    table = Table("photo", *columns, title="Pretrained ImageNet top-5 (scikit-image sample photos)", show_lines=True)
    for row, name in enumerate(PHOTOS):
        table.add_row(name, *(cells[row] for cells in columns.values()))
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
