"""Built-in datasets: ``av-digits`` (embedded) and converters from a local folder laid out like
``../shared/data`` (``fsdd-mnist``, ``mnist``, ``usps``, ``pneumoniamnist``, ``cwru``,
``moving-digits``, ``openclipart``); ``polymodal datasets list`` shows them.

Each writes files plus ``train.csv``, ``valid.csv`` and ``test.csv``, deterministically for a seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.data.datasets import (  # noqa: F401 - registration
    av_digits,
    cwru,
    fsdd_mnist,
    images,
    moving_digits,
    openclipart,  # noqa: F401,I001 - registration
)
from polymodal.data.datasets.base import DATASETS, SPLITS, DatasetSpec, summarise
from polymodal.errors import DatasetOptionError, DatasetSourceError, UnknownNameError


def prepare(name: str, out: str | Path, source: str | Path | None = None, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Prepare a built-in dataset into ``out``; return its summary (rows per split...).

    Raises:
        UnknownNameError: unknown dataset name (a KeyError).
        DatasetOptionError: an option the dataset does not take, or a value it does not allow.
        DatasetSourceError: the dataset needs a source folder and none (or a wrong one) was given.
    """
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset '{name}'; available: {sorted(DATASETS)}")
    spec = DATASETS[name]
    for option, value in options.items():
        if option not in spec.options:
            takes = ", ".join(f"'{o}'" for o in spec.options) or "none"
            raise DatasetOptionError(f"dataset '{name}' does not take the option '{option}' (options it takes: "
                                     f"{takes}); got {option}={value!r}", dataset=name, option=option)
    if spec.source is None and source is not None:
        raise DatasetOptionError(f"dataset '{name}' is embedded and takes no --source; got {source}", dataset=name,
                                 option="source")
    if spec.source is not None:
        if source is None:
            raise DatasetSourceError(f"dataset '{name}' needs --source: a folder holding {spec.source}")
        if not Path(source).is_dir():
            looked = "" if Path(source).is_absolute() else f" (looked for {Path(source).resolve()}: a relative --source " \
                                                           f"resolves against the working folder {Path.cwd()})"
            raise DatasetSourceError(f"dataset '{name}': source folder not found: {source}{looked}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out must be a folder; {out} is a file")
    # a dataset is complete once its dataset.json is written, last: an earlier one goes first, so an
    # interrupted preparation over it (files half overwritten) never passes for a complete dataset
    for stale in (out / "dataset.json", *(out / f"{split}.csv" for split in SPLITS)):
        stale.unlink(missing_ok=True)
    return spec.prepare(out, Path(source) if source is not None else None, seed=seed, **options)


__all__ = ["DATASETS", "DatasetSpec", "prepare", "summarise"]
