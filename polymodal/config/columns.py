"""How a config reads a manifest's columns: which are text (file paths, texts, categories) and
which are class labels. Config-only (no torch), so converting a manifest stays light."""

from __future__ import annotations

from polymodal.config.modalities import text_columns
from polymodal.config.root import Config


def csv_columns(config: Config) -> dict[str, list[str]]:
    """How a config reads a CSV manifest's columns (``read_manifest``'s ``text_columns`` and
    ``label_columns``): its modalities' file, text and category columns as text; its class labels
    as labels."""
    return {"text_columns": [c for m in config.modalities.values() for c in text_columns(m)],
            "label_columns": class_columns(config, ("classification", "anomaly", "retrieval"))}


def class_columns(config: Config, main_tasks: tuple[str, ...] = ("classification",)) -> list[str]:
    """The target columns of a config's classification tasks, the main one's (when its task is one
    of ``main_tasks``: anomaly and retrieval labels are classes to read too) and further ones'."""
    main = list(config.targets) if config.task in main_tasks else []
    return main + [c for task in (config.tasks or {}).values() if task.task == "classification" for c in task.targets]


def numeric_target_columns(config: Config) -> list[tuple[str, str, str]]:
    """``(key, task, column)`` of every multilabel label column and regression target column, the
    main task's (key ``target``) then the further ones' (``tasks.<name>.target``)."""
    tasks = [("target", config.task, config.targets),
             *((f"tasks.{name}.target", t.task, t.targets) for name, t in (config.tasks or {}).items())]
    return [(key, task, column) for key, task, columns in tasks if task in ("multilabel", "regression")
            for column in columns]
