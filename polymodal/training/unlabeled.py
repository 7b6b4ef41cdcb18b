"""One forward pass over the labelled and the unlabelled batch together.

Domain adaptation and semi-supervised terms need the network's outputs on unlabelled rows.
Running both batches through the network as one (as DANN, CDAN and FixMatch do) makes
batch normalisation see both domains in every step, so its running statistics, used at test
time, describe the target domain too. Terms may add views of the unlabelled batch first
(:meth:`~polymodal.training.terms.Term.prepare_unlabeled`; FixMatch appends a strongly
augmented copy with :func:`add_view`); the outputs come back split into the labelled part and
the unlabelled part. ``batch["views"]`` says which rows of the unlabelled part are which view:
``views["rows"]`` the rows as loaded, so terms that combine (CDAN + FixMatch) each read the rows
they mean.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from polymodal.data.dataset import Batch, collate
from polymodal.models.model import MultimodalNet, NetOutput

ROWS = "rows"  # the view of the unlabelled rows as loaded


def take_rows(value: Any, rows: slice) -> Any:
    """``value`` (a tensor, or dicts / named tuples of them) restricted to ``rows`` of its first axis."""
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, Mapping):
        return {k: take_rows(v, rows) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(take_rows(v, rows) for v in value))
    return value


def concat_inputs(first: Batch, second: Batch) -> Batch:
    """The ``inputs`` and ``present`` of two batches stacked (variable-length inputs are padded)."""
    return collate([{"inputs": first["inputs"], "present": first["present"]},
                    {"inputs": second["inputs"], "present": second["present"]}])


def batch_rows(batch: Batch) -> int:
    """Rows of a batch (its presence masks are (B,) per modality)."""
    return next(iter(batch["present"].values())).shape[0]


def add_view(batch: Batch, name: str, view: Batch) -> Batch:
    """``batch`` with the rows of ``view`` (``inputs`` and ``present``) appended, and their
    place recorded as ``batch["views"][name]``."""
    start = batch_rows(batch)
    views = {**batch["views"], name: slice(start, start + batch_rows(view))}
    return {**batch, **concat_inputs(batch, view), "views": views}


def view_rows(batch: Batch, name: str = ROWS) -> slice:
    """Which rows of the (prepared) unlabelled batch hold view ``name``."""
    if name not in batch["views"]:
        raise KeyError(f"the unlabelled batch has no view '{name}' (it has {sorted(batch['views'])}); "
                       "the term that adds it must come first in prepare_unlabeled")
    return batch["views"][name]


def forward_with_unlabeled(net: MultimodalNet, inputs: Mapping[str, Any], present: Mapping[str, torch.Tensor],
                           unlabeled: Batch | None, terms: Iterable[Any]
                           ) -> tuple[NetOutput, Batch | None, NetOutput | None]:
    """Training forward of the labelled rows and, when there is one, of the unlabelled batch.

    Args:
        inputs / present: the labelled batch (presence after modality dropout).
        unlabeled: the unlabelled batch, or None.
        terms: the run's loss terms; each may add views to the unlabelled batch.

    Returns:
        The labelled outputs, the unlabelled batch as the terms prepared it, and its outputs.
    """
    if unlabeled is None:
        return net.forward_train(inputs, present), None, None
    unlabeled = {**unlabeled, "views": {ROWS: slice(0, batch_rows(unlabeled))}}
    for term in terms:
        unlabeled = term.prepare_unlabeled(unlabeled)
    n = batch_rows({"present": present})
    joint = concat_inputs({"inputs": inputs, "present": present}, unlabeled)
    out = net.forward_train(joint["inputs"], joint["present"])
    return take_rows(out, slice(0, n)), unlabeled, take_rows(out, slice(n, None))
