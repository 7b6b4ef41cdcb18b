"""Built-in datasets: ``av-digits`` (embedded) and converters from a local folder laid out like
``../shared/data`` (``fsdd-mnist``, ``mnist``, ``usps``, ``pneumoniamnist``, ``cwru``,
``moving-digits``, ``openclipart``); ``polymodal datasets list`` shows them.

Each writes files plus ``train.csv``, ``valid.csv`` and ``test.csv``, deterministically for a seed,
into a new or empty folder (or over an earlier preparation, with ``overwrite``).
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
from polymodal.data.datasets.base import DATASETS, DatasetSpec, summarise
from polymodal.data.datasets.out_folder import preparing
from polymodal.errors import DatasetOptionError, DatasetSourceError, UnknownNameError
from polymodal.utils.suggest import did_you_mean


def prepare(name: str, out: str | Path, source: str | Path | None = None, seed: int = 0, overwrite: bool = False,
            **options: Any) -> dict[str, Any]:
    """Prepare a built-in dataset into ``out``, a new or empty folder; return its summary (rows
    per split...).

    Args:
        overwrite: replace the dataset an earlier preparation wrote into ``out`` (its files are
            removed once the new one is complete; a folder holding other files is refused even
            so, see :mod:`~polymodal.data.datasets.out_folder`).

    Raises:
        UnknownNameError: unknown dataset name (a KeyError).
        DatasetOptionError: an option the dataset does not take, or a value it does not allow.
        DatasetSourceError: the dataset needs a source folder and none (or a wrong one) was given.
        OptionError: ``out`` holds files: an earlier preparation's without ``overwrite``, or
            files no preparation wrote.
    """
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; available: {sorted(DATASETS)}")
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
    with preparing(out, name, overwrite):  # dataset.json, written last, says the dataset is complete
        return spec.prepare(out, Path(source) if source is not None else None, seed=seed, **options)


__all__ = ["DATASETS", "DatasetSpec", "prepare", "summarise"]
