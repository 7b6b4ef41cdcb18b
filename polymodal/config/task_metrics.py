"""What each task measures on validation data, in one table: the metrics early stopping and
``tune`` may watch, the one a run selects its epoch by by default, the headline figure a search
optimises by default, and the one robustness sweeps and attribution report.

Supervised tasks select by the validation loss: accuracy on a few hundred validation rows moves in
coarse steps and plateaus (often at 100% on rows like the training ones) while the model still
improves, so stopping on it keeps an early, under-trained epoch. A search ranks by the headline
figure instead (the loss is a poor thing to rank different models by).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskMetrics:
    """One task's validation metrics.

    Attributes:
        monitors: the metrics ``train.early_stopping.monitor`` and ``tune.metric`` may name.
        default_monitor: what ``monitor: auto`` (and a run without early stopping) selects by.
        headline: what ``tune`` optimises when nothing names a metric.
        sweep: the metric of robustness curves and attribution's drop when a modality is removed,
            higher is better (None: the task is not swept).
    """

    monitors: tuple[str, ...]
    default_monitor: str
    headline: str
    sweep: str | None = None


TASK_METRICS = {
    "classification": TaskMetrics(("loss", "accuracy", "macro_f1", "auroc", "ece", "log_loss"), "loss", "accuracy",
                                  "accuracy"),
    "multilabel": TaskMetrics(("loss", "subset_accuracy", "micro_f1", "macro_f1", "auroc"), "loss", "macro_f1",
                              "macro_f1"),
    "regression": TaskMetrics(("loss", "mae", "rmse", "r2"), "loss", "rmse", "r2"),
    "retrieval": TaskMetrics(("loss", "map", "recall@1", "recall@5", "recall@10", "median_rank"), "map", "map"),
    "anomaly": TaskMetrics(("loss",), "loss", "loss", "auroc"),
}
LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse", "ece", "log_loss", "median_rank"})


def direction(metric: str) -> str:
    """``min`` when a lower value of ``metric`` is better, else ``max``."""
    return "min" if metric in LOWER_IS_BETTER else "max"
