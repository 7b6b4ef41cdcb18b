"""Hyper-parameter search config (``tune:``): which config keys to vary and how."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt, model_validator

from polymodal.config.base import StrictModel


class RangeParam(StrictModel):
    """A number in [low, high]: an integer when ``low`` and ``high`` are both integers (in
    steps of ``step``), else a float (on a log scale with ``log: true``)."""

    low: int | float
    high: int | float
    log: bool = False
    step: int | float | None = None

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    @model_validator(mode="after")
    def _ordered(self) -> RangeParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0; got {self.low}")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be positive; got {self.step}")
        return self


class ChoiceParam(StrictModel):
    """One of ``choices`` (numbers, strings, lists or mappings)."""

    choices: list[Any] = Field(min_length=2)


Param = RangeParam | ChoiceParam


class TuneConfig(StrictModel):
    """What ``polymodal tune`` searches.

    Attributes:
        space: dotted config keys (``train.lr``, ``fusion.name``, ``modalities.audio.encoder.dim``)
            to a range (``{low, high}``, optionally ``log: true`` or ``step``) or ``{choices: [...]}``.
        trials: how many configurations to train.
        metric: validation metric to optimise (its value at the epoch each trial keeps); ``auto``
            uses early stopping's monitor when one is named, else the task's headline metric
            (``accuracy``, ``macro_f1``, ``rmse``, ``map``).
        pruner: ``median`` stops a trial whose validation metric falls below the median of earlier
            trials at the same epoch (after ``warmup_epochs``); ``none`` never stops early.
        seed: seed of the sampler (TPE), so a search can be repeated.
    """

    space: dict[str, Annotated[Param, Field(union_mode="left_to_right")]] = Field(min_length=1)
    trials: PositiveInt = 20
    metric: str = "auto"
    pruner: Literal["median", "none"] = "median"
    warmup_epochs: Annotated[int, Field(ge=0)] = 2
    seed: int = 0
