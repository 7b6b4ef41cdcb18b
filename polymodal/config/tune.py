"""Hyper-parameter search config (``tune:``): which config keys to vary and how."""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, PositiveInt, Tag, field_validator, model_validator

from polymodal.config.base import StrictModel


class RangeParam(StrictModel):
    """A number in [low, high]: an integer when ``low`` and ``high`` are both integers (in
    steps of ``step``, a whole number), else a float (on a log scale with ``log: true``, or in
    steps of ``step``: not both, as Optuna draws one way or the other)."""

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
        if self.step is not None:
            self._check_step(self.step)
        return self

    def _check_step(self, step: int | float) -> None:
        """What Optuna draws with ``step``: a positive step, no other than 1 on a log scale (Optuna
        refuses it), a whole one in an integer range (``int(0.5)`` would be 0), and no larger than
        the range (only ``low`` would ever be drawn)."""
        if step <= 0:
            raise ValueError(f"step must be positive; got {step}")
        if self.log and not (self.integer and step == 1):
            raise ValueError(f"a log-scale range (log: true) takes no step (Optuna draws on a log scale or in steps, "
                             f"not both); got step {step}: drop step, or log")
        if self.integer and not float(step).is_integer():
            raise ValueError(f"an integer range (low {self.low} and high {self.high} are whole numbers) takes a whole "
                             f"step; got step {step}: give a whole step, or float bounds (low: {float(self.low)}) for a "
                             "key that takes fractions")
        width = self.high - self.low
        if step > width * (1 + 1e-9):  # {low: 0.1, high: 0.3, step: 0.2}: a width of 0.19999999999999998 fits it
            raise ValueError(f"step ({step}) is larger than the range (high - low = {width:.10g}): only low "
                             f"({self.low}) would be drawn")


class ChoiceParam(StrictModel):
    """One of ``choices`` (numbers, strings, lists or mappings)."""

    choices: list[Any]

    @field_validator("choices")
    @classmethod
    def _several(cls, choices: list[Any]) -> list[Any]:
        if len(choices) < 2:
            raise ValueError("a search needs at least 2 choices (to fix a key's value, set it in "
                             "the config and leave it out of tune.space)")
        return choices

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``[16, 32]`` is short for ``{choices: [16, 32]}``."""
        return {"choices": value} if isinstance(value, list) else value


RANGE_KEYS = ("low", "high", "log", "step")
# the union's tags: pydantic puts them in an error's location, where they must not read as a key the user wrote
RANGE_TAG, CHOICES_TAG = "<range>", "<choices>"


def _param_kind(value: Any) -> str:
    """Which of the two a search-space entry means, so that its problems are that one's only: a
    mapping naming ``choices`` (or a misspelling of it, and no range key) is a choice, a list is
    the choices themselves, anything else a range."""
    if isinstance(value, ChoiceParam | list):
        return CHOICES_TAG
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        if "choices" in keys or (not set(keys) & set(RANGE_KEYS)
                                 and any(difflib.get_close_matches(k, ["choices"], n=1) for k in keys)):
            return CHOICES_TAG
    return RANGE_TAG


Param = Annotated[Annotated[RangeParam, Tag(RANGE_TAG)]
                  | Annotated[ChoiceParam, Tag(CHOICES_TAG)],
                  Discriminator(_param_kind)]


class TuneConfig(StrictModel):
    """What ``polymodal tune`` searches.

    Attributes:
        space: dotted config keys (``train.lr``, ``fusion.name``, ``modalities.audio.encoder.dim``)
            to a range (``{low, high}``, optionally ``log: true`` or ``step``) or ``{choices: [...]}``
            (a bare list is short for the choices).
        trials: how many configurations to train (a resumed search may raise it, as ``--trials``).
        metric: validation metric to optimise (its value at the epoch each trial keeps); ``auto``
            uses early stopping's monitor when one is named, else the task's headline metric
            (``accuracy``, ``macro_f1``, ``rmse``, ``map``; ``r2`` for a regression of several
            targets, whose mean ``rmse`` would mix their units). With several regression targets,
            one target's own figure: ``rmse_per_target.<target>`` (also ``mae_``, ``r2_``).
        pruner: ``median`` stops a trial whose validation metric falls below the median of earlier
            trials at the same epoch (after ``warmup_epochs``); ``none`` never stops early.
        seed: seed of the sampler (TPE), so a search can be repeated.
    """

    space: dict[str, Param] = Field(min_length=1)
    trials: PositiveInt = 20
    metric: str = "auto"
    pruner: Literal["median", "none"] = "median"
    warmup_epochs: Annotated[int, Field(ge=0)] = 2
    seed: int = 0
