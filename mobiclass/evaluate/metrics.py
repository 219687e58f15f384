"""Classification metrics from predicted probabilities, computed with scikit-learn."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss


def summary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and log loss (the mean cross-entropy) over every class of the model."""
    labels = np.asarray(labels)
    predicted = probabilities.argmax(axis=1)
    classes = np.arange(probabilities.shape[1])
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0)),
        "loss": float(log_loss(labels, np.clip(probabilities, 1e-7, 1.0), labels=classes)),
    }
