"""Classification metrics from predicted probabilities: the report with scikit-learn, the figures of every
training epoch with NumPy alone (importing scikit-learn takes 1.4 s here, before the first model could be saved)."""
from __future__ import annotations

import numpy as np


def summary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and log loss (the mean cross-entropy) over every class of the model: scikit-learn's
    accuracy_score, f1_score(average="macro", zero_division=0) and log_loss of the probabilities clipped to 1e-7."""
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    classes = probabilities.shape[1]
    counts = np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    right = np.diag(counts)
    answered = counts.sum(axis=0) + counts.sum(axis=1)  # 2 tp + fp + fn
    f1 = np.divide(2 * right, answered, out=np.zeros(classes), where=answered > 0)
    eps = np.finfo(probabilities.dtype).eps
    given = np.clip(np.clip(probabilities, 1e-7, 1.0)[np.arange(len(labels)), labels], eps, 1 - eps)
    return {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else 0.0,
        "macro_f1": float(f1.mean()),
        "loss": float(-np.log(given).mean()),
    }


def classification_report(labels: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict:
    """Everything `mobiclass evaluate` reports, over the classes present in `labels`.

    Keys: accuracy, top5_accuracy (1.0 by definition with 5 classes or fewer), macro/weighted precision,
    recall and F1, log_loss, per_class {name: {precision, recall, f1, support}}, confusion_matrix
    (counts), confusion_matrix_normalized (rows sum to 1), classes.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, log_loss, precision_recall_fscore_support

    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    all_classes = np.arange(len(classes))
    present = np.unique(labels)  # macro averages over the classes evaluated, as scikit-learn does
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, labels=present,
                                                                     zero_division=0)
    counts = confusion_matrix(labels, predicted, labels=all_classes)
    rows = counts.sum(axis=1, keepdims=True)
    top5 = np.argsort(-probabilities, axis=1, kind="stable")[:, :5]
    report = {
        "accuracy": float(accuracy_score(labels, predicted)),
        "top5_accuracy": float((top5 == labels[:, None]).any(axis=1).mean()),
        "log_loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1.0), labels=all_classes)),
        "per_class": {classes[c]: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for c, p, r, f, s in zip(present, precision, recall, f1, support)},
        "confusion_matrix": counts.tolist(),
        "confusion_matrix_normalized": np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0).tolist(),
        "classes": list(classes),
        "count": int(len(labels)),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, labels=present, average=average,
                                                     zero_division=0)
        report.update({f"{average}_precision": float(p), f"{average}_recall": float(r), f"{average}_f1": float(f)})
    return report


def calibration_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> dict:
    """Reliability of the top-1 confidence: per-bin mean confidence, accuracy and count, and the ECE."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(labels)
    edges = np.arange(bins + 1) / bins  # exact edges: linspace puts 0.6 at 0.6000000000000001
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(mask.sum()),
                     "confidence": float(confidence[mask].mean()) if mask.any() else None,
                     "accuracy": float(correct[mask].mean()) if mask.any() else None})
    ece = sum(r["count"] * abs(r["confidence"] - r["accuracy"]) for r in rows if r["count"]) / max(len(labels), 1)
    return {"bins": rows, "ece": float(ece)}


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the log loss of softmax(logits / T) on held-out predictions (Guo et al.,
    2017): one number that makes confidence mean what it says without changing any answer.

    When every held-out answer is right, the log loss keeps falling as T shrinks: any sharpening seems to help, and
    the fit would make the model answer 100 % to anything, a blank photo included. With no mistake to measure
    against, the model is never made more confident than it was trained (T >= 1)."""
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
    lowest = 0.0 if (logits.argmax(axis=1) == labels).all() else -3.0

    def nll(log_t: float) -> float:
        scaled = logits / np.exp(log_t)
        scaled -= scaled.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(scaled).sum(axis=1)) - scaled[np.arange(len(labels)), labels]))

    return float(np.exp(minimize_scalar(nll, bounds=(lowest, 3.0), method="bounded").x))
