"""Classification metrics from label ids: accuracy, macro-F1, per-class scores, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(true_ids: np.ndarray, predicted_ids: np.ndarray, num_labels: int) -> np.ndarray:
    """matrix[t, p] counts rows whose true label is t and predicted label is p."""
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (true_ids, predicted_ids), 1)
    return matrix


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


def classification_report(
    true_ids: np.ndarray, predicted_ids: np.ndarray, labels: list[str]
) -> dict[str, Any]:
    """Accuracy, macro-F1 over every label, per-class precision/recall/F1/support and the matrix.
    A class with no predictions and no support scores 0, as scikit-learn's zero_division=0 does."""
    matrix = confusion_matrix(true_ids, predicted_ids, len(labels))
    true_positives = np.diag(matrix).astype(np.float64)
    predicted_counts = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = _safe_divide(true_positives, predicted_counts)
    recall = _safe_divide(true_positives, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = matrix.sum()
    return {
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()) if len(labels) else 0.0,
        "per_class": {
            label: {
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(support[index]),
            }
            for index, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
    }
