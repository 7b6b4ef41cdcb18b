"""Few-shot prediction with a support set (models trained with ``transfer: {method: protonet}``).

    pred.predict(query_df, support=support_df)     # labels from support_df's target column
    pred.evaluate(query_df, support=support_df)    # metrics over the support set's classes

The support rows are embedded, each of their classes' mean embedding becomes a prototype, and the
query rows are classified by their nearest prototype. The support classes need not be the
training classes. The model's own prototypes and classes are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from polymodal.data.dataset import inference_loader
from polymodal.data.pipeline import as_names
from polymodal.data.targets import TargetEncoder
from polymodal.errors import SchemaMismatchError
from polymodal.models.heads import PrototypeHead
from polymodal.models.objectives.fewshot import class_prototypes
from polymodal.training.fewshot import prototype_embeddings


@contextmanager
def use_support(predictor: Any, support: Any, modalities: Iterable[str] | None = None) -> Iterator[None]:
    """Within the block, ``predictor`` classifies by the prototypes of ``support``'s classes.

    Args:
        predictor: a fitted :class:`~polymodal.predictor.MultimodalPredictor` with a prototype head.
        support: a labelled manifest (path or DataFrame) with at least two classes.
        modalities: embed the support rows with only these modalities present, as the queries are
            (default: every modality its manifest has).

    Raises:
        SchemaMismatchError: the model is not a prototypical network, or the support set has
            fewer than two classes.
        ManifestError / DecodeError: the support manifest is bad.
    """
    pipeline, net = predictor.require_fitted()
    if not isinstance(net.head, PrototypeHead):
        raise SchemaMismatchError("a support set needs a model trained with transfer: {method: protonet}; this one "
                                  f"has a '{predictor.config.head.name}' head and no prototypes")
    names = as_names(modalities)
    manifest = pipeline.read(support, require_target=True, modalities=names)
    table = pipeline.encode(manifest, progress=False, modalities=pipeline.check_modalities(names, manifest))
    encoder = TargetEncoder("classification", predictor.config.targets, fitted_on=f"the support set {manifest.name}")
    encoder.fit(manifest.subset(table.rows))
    labels = torch.as_tensor(encoder.encode(manifest, table.rows), dtype=torch.long)
    loader = inference_loader(pipeline.dataset(table), predictor.config.train.batch_size)
    _, prototypes = class_prototypes(prototype_embeddings(net, loader, predictor.device), labels)
    saved_prototypes, saved_targets = net.head.prototypes.detach().clone(), pipeline.targets
    net.head.set_prototypes(prototypes)
    pipeline.targets = encoder
    try:
        yield
    finally:
        net.head.set_prototypes(saved_prototypes)
        pipeline.targets = saved_targets
