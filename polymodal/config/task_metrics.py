"""What each task measures on validation data, in one table: the metrics early stopping and
``tune`` may watch, the one a run selects its epoch by by default, the headline figure a search
optimises by default, and the one robustness sweeps and attribution report.

Supervised tasks select by the validation loss: accuracy on a few hundred validation rows moves in
coarse steps and plateaus (often at 100% on rows like the training ones) while the model still
improves, so stopping on it keeps an early, under-trained epoch. A search ranks by the headline
figure instead (the loss is a poor thing to rank different models by).

Regression of several targets (``target: [load, rpm, fault_size]``, each in its own unit) reports
``mae`` and ``rmse`` as the means of the targets' own, which mix their units (the target of the
largest unit makes nearly all of them), and each target's figures as ``<metric>_per_target.<target>``
(``rmse_per_target.rpm``: the one name early stopping, tables and ``compare`` use). Its default
monitor stays the loss, computed on standardised targets so that every target weighs alike; its
headline (``tune``, ``compare``) is the unit-free mean ``r2`` instead of ``rmse``.
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
        per_target: the metrics also given for each target column when there are several, as
            ``<metric>_per_target.<target>`` (and may then be monitored so).
        several_targets_headline: the headline with several target columns, where the
            ``headline`` would mix their units (None: the ``headline``).
    """

    monitors: tuple[str, ...]
    default_monitor: str
    headline: str
    sweep: str | None = None
    per_target: tuple[str, ...] = ()
    several_targets_headline: str | None = None


TASK_METRICS = {
    "classification": TaskMetrics(("loss", "accuracy", "macro_f1", "auroc", "ece", "log_loss"), "loss", "accuracy",
                                  "accuracy"),
    "multilabel": TaskMetrics(("loss", "subset_accuracy", "micro_f1", "macro_f1", "auroc"), "loss", "macro_f1",
                              "macro_f1"),
    "regression": TaskMetrics(("loss", "mae", "rmse", "r2"), "loss", "rmse", "r2", per_target=("mae", "rmse", "r2"),
                              several_targets_headline="r2"),
    "retrieval": TaskMetrics(("loss", "map", "recall@1", "recall@5", "recall@10", "median_rank"), "map", "map"),
    "anomaly": TaskMetrics(("loss",), "loss", "loss", "auroc"),
}
LOWER_IS_BETTER = frozenset({"loss", "mae", "rmse", "ece", "log_loss", "median_rank"})
PER_TARGET = "_per_target"  # ``mae_per_target``: the metrics dict's entry of each target's own figures
UNIT_MIXING = frozenset({"mae", "rmse"})  # averaged over several targets, they add up different units


def per_target_name(metric: str, target: str) -> str:
    """The flat name of one target's figure: ``rmse_per_target.rpm``."""
    return f"{metric}{PER_TARGET}.{target}"


def split_metric(name: str) -> tuple[str, str | None]:
    """``(metric, target)`` of a flat per-target name (``rmse_per_target.rpm`` -> ``("rmse", "rpm")``;
    a target name may hold dots), ``(name, None)`` for any other metric."""
    metric, found, target = name.partition(f"{PER_TARGET}.")
    return (metric, target) if found and metric and target else (name, None)


def direction(metric: str) -> str:
    """``min`` when a lower value of ``metric`` (or of a target's own, ``rmse_per_target.rpm``) is
    better, else ``max``."""
    return "min" if split_metric(metric)[0] in LOWER_IS_BETTER else "max"


def monitor_choices(task: str, targets: list[str]) -> list[str]:
    """What ``train.early_stopping.monitor`` and ``tune.metric`` may name for ``task`` over the
    ``targets`` columns: the task's monitors and, with several targets, each target's own figures."""
    spec = TASK_METRICS[task]
    several = spec.per_target if len(targets) > 1 else ()
    return [*spec.monitors, *(per_target_name(m, t) for m in several for t in targets)]


def describe_choices(task: str, targets: list[str]) -> str:
    """:func:`monitor_choices` in words for an error message (a target's figures named once, not
    once per target)."""
    spec = TASK_METRICS[task]
    plain = str(list(spec.monitors))
    if len(targets) < 2 or not spec.per_target:
        return plain
    each = " / ".join(per_target_name(m, "T") for m in spec.per_target)
    return f"{plain}, or {each} where T is a target of {targets}"


def headline(task: str, targets: list[str]) -> str:
    """The figure ``tune`` optimises and ``compare`` ranks by when nothing names one: the task's
    headline, unit-free over several target columns (see the module's docstring)."""
    spec = TASK_METRICS[task]
    if len(targets) > 1 and spec.several_targets_headline is not None:
        return spec.several_targets_headline
    return spec.headline


def mixes_units(task: str, targets: list[str], metric: str) -> bool:
    """Whether ``metric`` averages figures of ``targets`` measured in different units (``mae`` and
    ``rmse`` of a regression of several targets)."""
    return task == "regression" and len(targets) > 1 and metric in UNIT_MIXING
