"""Semi-supervised learning as loss terms: pseudo-labelling and FixMatch.

Both read the network's outputs on the unlabelled batch, forwarded together with the labelled
one (:mod:`polymodal.training.unlabeled`). FixMatch first appends a strongly augmented copy of
each unlabelled row (:func:`polymodal.data.strong.strong_view`) on top of the modality's own
training augmentation (the weak view).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from polymodal.config.transfer import FixMatchConfig, PseudoLabelConfig
from polymodal.data.embeddings import cached_modalities
from polymodal.data.strong import strong_view
from polymodal.models.objectives import LossOutput
from polymodal.models.objectives.semi import pseudo_label_loss
from polymodal.training.terms import TRANSFER_TERMS, Batch, StepContext, Term
from polymodal.training.unlabeled import ROWS, add_view, take_rows, view_rows


def _unlabeled_logits(ctx: StepContext, classes: slice, view: str = ROWS):
    if ctx.unlabeled_out is None or ctx.unlabeled is None:
        raise ValueError("semi-supervised learning needs the unlabelled batch; the training step has none")
    return ctx.unlabeled_out.outputs[view_rows(ctx.unlabeled, view), classes]


@TRANSFER_TERMS.register(PseudoLabelConfig)
class PseudoLabelTerm(Term):
    """Confident predictions on unlabelled rows become their labels (Lee, 2013).

    Args:
        threshold: minimum top-class probability for a row to count.
        rampup: fraction of training over which the loss is scaled up linearly from 0.
        classes: the main task's columns of the outputs.
    """

    name = "pseudo"

    def __init__(self, threshold: float, weight: float, rampup: float, classes: slice):
        super().__init__(weight)
        self.threshold = threshold
        self.rampup = rampup
        self.classes = classes

    @classmethod
    def from_config(cls, cfg: PseudoLabelConfig, *, classes: slice, **_: Any) -> PseudoLabelTerm:
        return cls(cfg.threshold, cfg.weight, cfg.rampup, classes)

    def forward(self, ctx: StepContext) -> LossOutput:
        logits = _unlabeled_logits(ctx, self.classes)
        result = pseudo_label_loss(logits, logits, self.threshold)
        scale = 1.0 if self.rampup == 0 else min(1.0, ctx.progress / self.rampup)
        return LossOutput(result.loss * scale, result.logs)


STRONG = "strong"  # FixMatch's view of the unlabelled batch


@TRANSFER_TERMS.register(FixMatchConfig)
class FixMatchTerm(Term):
    """FixMatch (Sohn et al., 2020): the weak view's confident prediction labels the strong view.

    Args:
        kinds: modality kind by name (chooses each modality's strong augmentation).
        options: per modality, its preprocessor's ``strong_options()`` (the batch's layout).
        threshold: minimum top-class probability of the weak view.
        magnitude / erase: strength of the strong augmentation.
        classes: the main task's columns of the outputs.
        stored: the modalities whose batches carry a frozen encoder's (or cached stage's) stored
            outputs in place of inputs (:func:`~polymodal.data.embeddings.cached_modalities`).
    """

    name = "fixmatch"

    def __init__(self, kinds: Mapping[str, str], threshold: float, weight: float, magnitude: float, erase: float,
                 classes: slice, options: Mapping[str, Mapping[str, Any]] | None = None, stored: Collection[str] = ()):
        super().__init__(weight)
        self.kinds = dict(kinds)
        self.stored = frozenset(stored)
        self.options = dict(options or {})
        self.threshold = threshold
        self.magnitude = magnitude
        self.erase = erase
        self.classes = classes

    @classmethod
    def from_config(cls, cfg: FixMatchConfig, *, classes: slice, config: Any, pipeline: Any, **_: Any
                    ) -> FixMatchTerm:
        kinds = {name: m.kind for name, m in config.modalities.items()}
        options = {name: prep.strong_options() for name, prep in pipeline.preprocessors.items()}
        return cls(kinds, cfg.threshold, cfg.weight, cfg.strong.magnitude, cfg.strong.erase, classes, options,
                   cached_modalities(config))

    def prepare_unlabeled(self, batch: Batch) -> Batch:
        """The batch followed by a strong copy of its rows (view ``strong``). A modality whose
        inputs are its frozen encoder's stored outputs (``encoder.cache``, or a cached stage's:
        ``encoder.frame.cache``) is copied as it is."""
        weak = take_rows({"inputs": batch["inputs"], "present": batch["present"]}, view_rows(batch))
        raw = {name: x for name, x in weak["inputs"].items() if name not in self.stored}
        augmented = strong_view(raw, self.kinds, self.magnitude, self.erase, options=self.options,
                                present=weak["present"])
        strong = {"inputs": {name: augmented.get(name, x) for name, x in weak["inputs"].items()},
                  "present": weak["present"]}
        return add_view(batch, STRONG, strong)

    def forward(self, ctx: StepContext) -> LossOutput:
        weak = _unlabeled_logits(ctx, self.classes)
        return pseudo_label_loss(_unlabeled_logits(ctx, self.classes, STRONG), weak, self.threshold)
