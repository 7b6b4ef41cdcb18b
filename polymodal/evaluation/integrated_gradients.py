"""Within-modality attributions with Captum's Integrated Gradients.

For each modality and each chosen sample that holds it, the explained output's logit (an anomaly
detector: its score) is attributed to the modality's encoder input, every other input held fixed: pixels (summed over
channels), the pixels of every real sampled video frame (summed over channels; a short clip's
padding left out), time-frequency bins of audio features, signal steps (or spectrogram bins), tabular
numbers, and text tokens (Layer Integrated Gradients on the token embeddings, summed over the
embedding axis). The baseline is all zeros (the training mean under standard normalisation);
for text it is the padding token at every position; for a table it is "the average row" at the
encoder body's input (:func:`tabular_baseline`): numbers 0 (the training mean under ``scale:
standard``), missing flags 0 (given), and each categorical column's embeddings averaged over the
training rows (weighted by each category's count), not the unknown category, whose embedding
stands for no real value and would credit a column that carries no signal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from polymodal.errors import MissingDependencyError
from polymodal.evaluation.data import EvalData, batches, output_names

if TYPE_CHECKING:
    from polymodal.estimator import Estimator


@dataclass
class WithinAttribution:
    """One sample's attribution inside one modality.

    Attributes:
        row: row number in the explained manifest.
        modality: modality name; ``kind`` its kind.
        output: the output explained.
        attribution: image (H, W); video (T, H, W), the clip's real sampled frames; audio (F, T);
            signal (C, L) or spectrogram (C*F, T); tabular (features,); text (tokens,).
        display: what the attribution is drawn over: image uint8 (H, W, C); video uint8
            (T, H, W, C); audio / signal the model's input in the same layout as ``attribution``;
            tabular the standardised values.
        labels: token strings (text) or feature names (tabular), else None.
        layout: ``image``, ``frames`` (a strip of video frames), ``map`` (2-D time-frequency),
            ``lines`` (signal channels), ``bars`` (tabular) or ``tokens`` (text).
        time_axis: what a ``map``'s or ``lines``'s horizontal axis counts, with its step.
        features: tabular: the feature each bar stands for, without the row's value (``crp``,
            ``crp (missing)``, ``sex``): what attributions of several rows are gathered by.
    """

    row: int
    modality: str
    kind: str
    output: Any
    attribution: np.ndarray
    display: np.ndarray | None
    labels: list[str] | None
    layout: str
    time_axis: str = "step"
    features: list[str] | None = None


def _captum() -> Any:
    try:
        import captum.attr
    except ImportError:
        raise MissingDependencyError("captum", "within-modality attribution (Integrated Gradients)") from None
    return captum.attr


def embedding_layer(encoder: nn.Module) -> nn.Embedding:
    """The token-embedding layer of a text encoder (transformers models: ``get_input_embeddings``)."""
    model = getattr(encoder, "model", None)
    if model is not None and hasattr(model, "get_input_embeddings"):
        return model.get_input_embeddings()
    for module in encoder.modules():
        if isinstance(module, nn.Embedding):
            return module
    raise TypeError(f"text encoder {type(encoder).__name__} has no nn.Embedding to attribute tokens through")


def _forward(net: nn.Module, inputs: Mapping[str, Mapping[str, torch.Tensor]], present: Mapping[str, torch.Tensor],
             modality: str, keys: tuple[str, ...] = ("x",)) -> tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]:
    """A function ``f(*attributed, *rest) -> logits`` taking ``inputs[modality][key]`` for each of
    ``keys`` first, then every other tensor (other inputs, presence masks) flattened into ``rest``,
    which Captum expands with them."""
    slots = [(n, k) for n in sorted(inputs) for k in sorted(inputs[n]) if not (n == modality and k in keys)]
    names = sorted(present)

    def forward(*args: torch.Tensor) -> torch.Tensor:
        attributed, rest = args[:len(keys)], args[len(keys):]
        rebuilt: dict[str, dict[str, torch.Tensor]] = {n: {} for n in inputs}
        rebuilt[modality].update(zip(keys, attributed))
        for (n, k), value in zip(slots, rest):
            rebuilt[n][k] = value
        masks = dict(zip(names, rest[len(slots):]))
        return net(rebuilt, masks)

    extra = tuple(inputs[n][k] for n, k in slots) + tuple(present[n] for n in names)
    return forward, extra


def _attribute(predictor: Estimator, modality: str, batch: dict[str, Any], target: torch.Tensor,
               steps: int) -> torch.Tensor:
    """Raw IG attributions, the shape of the modality's ``x`` (text: (B, T) after summing)."""
    attr = _captum()
    net, encoders = predictor.output_network(), predictor.require_fitted()[1].encoders
    kind = predictor.config.modalities[modality].kind
    if kind == "tabular":  # numbers and categories together, at the input of the encoder's body
        encoder = encoders[modality]
        inputs = batch["inputs"][modality]
        with torch.no_grad():
            body_input = tabular_body_input(encoder, inputs["x"].float(), inputs["cat"])  # (B, width)
            baseline = tabular_baseline(predictor.pipeline.preprocessors[modality], encoder).to(body_input)
        forward, extra = _forward(net, batch["inputs"], batch["present"], modality, keys=())
        method = attr.IntegratedGradients(through_body(encoder, forward))
        return method.attribute(body_input, baselines=baseline.expand_as(body_input).contiguous(), target=target,
                                additional_forward_args=extra, n_steps=steps)
    forward, extra = _forward(net, batch["inputs"], batch["present"], modality)
    x = batch["inputs"][modality]["x"]
    if kind == "text":
        pad = int(predictor.pipeline.preprocessors[modality].pad_id)
        method = attr.LayerIntegratedGradients(forward, embedding_layer(encoders[modality]))
        result = method.attribute(x, baselines=torch.full_like(x, pad), target=target, additional_forward_args=extra,
                                  n_steps=steps)
        return result.sum(dim=-1)  # (B, T)
    method = attr.IntegratedGradients(forward)
    return method.attribute(x.float(), baselines=torch.zeros_like(x, dtype=torch.float32), target=target,
                            additional_forward_args=extra, n_steps=steps)


def tabular_body_input(encoder: nn.Module, x: torch.Tensor, cat: torch.Tensor) -> torch.Tensor:
    """What a tabular encoder's body reads (B, width): the numbers (and flags), then each
    categorical column's embedding (see :class:`~polymodal.models.encoders.tabular.TabularMlp`)."""
    return torch.cat([x, *(emb(cat[:, j]) for j, emb in enumerate(encoder.embeddings))], dim=-1)


def tabular_baseline(prep: Any, encoder: nn.Module) -> torch.Tensor:
    """(width,) "the average row" at a tabular encoder body's input, the attribution baseline:
    numbers and missing flags 0 (the standardised training mean; flags: given), and each
    categorical column's learned embeddings weighted by their training rows (a run saved before
    the counts were recorded: weighted equally); a column that learned no category keeps the
    unknown category's embedding."""
    parts = [torch.zeros(prep.n_numeric_features)]
    counts = prep.category_counts or {}
    for column, emb in zip(prep.categorical, encoder.embeddings, strict=True):
        learned = len(prep.categories[column])
        weight = emb.weight.detach().float().cpu()
        if learned == 0:
            parts.append(weight[0])
            continue
        w = torch.as_tensor(counts.get(column, [1] * learned), dtype=torch.float32)
        parts.append((w[:, None] * weight[1:learned + 1]).sum(dim=0) / w.sum())
    return torch.cat(parts)


def through_body(encoder: nn.Module, forward: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """``f(body_input, *rest)``: ``forward(*rest)`` with the tabular ``encoder``'s body reading
    ``body_input`` in place of the input its numbers and categories make."""

    def run(body_input: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        handle = encoder.body.register_forward_pre_hook(lambda _module, _args: (body_input,))
        try:
            return forward(*rest)
        finally:
            handle.remove()

    return run


def within_modality(predictor: Estimator, data: EvalData, positions: np.ndarray, explained: np.ndarray,
                    steps: int = 32) -> list[WithinAttribution]:
    """Integrated-Gradients attributions for the table rows at ``positions``, every modality they hold.

    Args:
        positions: table positions of the samples to attribute.
        explained: (N,) the output explained for every table row.
        steps: interpolation steps.
    """
    _, net = predictor.require_fitted()
    net.eval()
    names = output_names(predictor)
    out: list[WithinAttribution] = []
    for modality in predictor.config.modality_names:
        holds = np.zeros(len(data.table), bool)
        holds[positions] = True
        holds &= data.table.modalities[modality].present
        if not holds.any():
            continue
        chosen = np.flatnonzero(holds)
        sub = data.table.select(holds)
        batch = next(batches(predictor, sub, batch_size=len(chosen)))
        if "x" not in batch["inputs"][modality]:
            continue  # features precomputed by a frozen encoder
        target = torch.as_tensor(explained[chosen], device=batch["index"].device)
        with torch.enable_grad():
            raw = _attribute(predictor, modality, batch, target, steps).detach().cpu().numpy()
        for j, position in enumerate(chosen):
            out.append(_describe(predictor, data, sub, batch, modality, j, int(position), raw[j],
                                 names[int(explained[position])]))
    return out


def _tabular_bars(predictor: Estimator, modality: str, raw: np.ndarray, inputs: Mapping[str, torch.Tensor],
                  j: int, encoder: nn.Module) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """One attribution per numeric column (and missing flag) and per categorical column (its
    embedding's dimensions summed; the baseline is the column's training-weighted mean embedding:
    :func:`tabular_baseline`), the row's values, the
    bars' labels and the features they stand for.
    A number's label holds its value as given (``crp = 25.3``), or says that the cell was blank
    and what was imputed in its place (``crp (blank: imputed 18.6)``): its bar is then the
    attribution of that imputed value, not of a measurement."""
    prep = predictor.pipeline.preprocessors[modality]
    values = [float(v) for v in inputs["x"][j].detach().cpu().numpy()]
    flags = prep.cfg.missing_indicator
    labels = []
    for i, column in enumerate(prep.numeric):
        given = values[i] * prep.scale[i] + prep.center[i]  # back from the standardised input
        blank = flags and values[len(prep.numeric) + i] > 0.5
        maybe = not flags and np.isclose(given, prep.fill[i])  # without flags a blank reads as the imputed value
        labels.append(f"{column} (blank: imputed {given:.4g})" if blank else
                      f"{column} = {given:.4g} (the imputed value: blank?)" if maybe else f"{column} = {given:.4g}")
    labels += [f"{c} (missing)" for c in prep.numeric] if flags else []
    n = len(labels)
    parts, start = [raw[:n]], n
    for column, emb, code in zip(prep.categorical, encoder.embeddings,
                                 inputs["cat"][j].tolist(), strict=True):
        parts.append(raw[start:start + emb.embedding_dim].sum(keepdims=True))
        start += emb.embedding_dim
        known = prep.categories[column]
        labels.append(f"{column} = {known[code - 1] if 0 < code <= len(known) else '(unknown)'}")
        values.append(float(code))
    features = [*prep.numeric, *([f"{c} (missing)" for c in prep.numeric] if flags else []), *prep.categorical]
    return np.concatenate(parts), np.asarray(values), labels, features


def _describe(predictor: Estimator, data: EvalData, sub: Any, batch: dict[str, Any], modality: str, j: int,
              position: int, raw: np.ndarray, output: Any) -> WithinAttribution:
    """Turn one sample's raw attribution into its display form."""
    kind = predictor.config.modalities[modality].kind
    inputs = batch["inputs"][modality]
    row = int(data.source_rows[position])
    x = inputs["x"][j].detach().cpu().numpy()
    if kind == "image":
        image = np.asarray(sub.modalities[modality].arrays["x"][[j]][0])  # stored uint8 (H, W, C); [[j]]: cached
        # arrays (SegmentedArray) take index arrays only
        return WithinAttribution(row, modality, kind, output, raw.sum(axis=0), image, None, "image")
    length = int(inputs["mask"][j].sum()) if "mask" in inputs else None
    if kind == "video":  # (T, C, H, W) -> (T, H, W), the padding frames of a short clip trimmed
        frames = np.asarray(sub.modalities[modality].arrays["x"][[j]][0])  # stored uint8 (T, H, W, C)
        return WithinAttribution(row, modality, kind, output, raw[:length].sum(axis=1), frames[:length], None, "frames")
    prep = predictor.config.modalities[modality].preprocess
    if kind == "audio":  # (T, F) -> (F, T), padding trimmed
        return WithinAttribution(row, modality, kind, output, raw[:length].T, x[:length].T, None, "map",
                                 "sample" if prep.features == "waveform" else f"frame (one per {prep.hop_ms:g} ms)")
    if kind == "signal":
        spectral = prep.spectrogram
        return WithinAttribution(row, modality, kind, output, raw[:, :length], x[:, :length], None,
                                 "lines" if spectral is None else "map",
                                 "sample" if spectral is None else f"window (one per {spectral.hop} samples)")
    if kind == "tabular":  # raw: the body's input, numbers (and flags) then each category's embedding
        attribution, values, labels, features = _tabular_bars(predictor, modality, raw, inputs, j,
                                                              predictor.require_fitted()[1].encoders[modality])
        return WithinAttribution(row, modality, kind, output, attribution, values, labels, "bars", features=features)
    if kind != "text":
        raise TypeError(f"modality '{modality}': no within-modality display for kind '{kind}'")
    prep = predictor.pipeline.preprocessors[modality]
    cell = data.manifest.frame[predictor.config.modalities[modality].column].iloc[int(data.table.rows[position])]
    tokens = prep.token_labels(str(cell))
    return WithinAttribution(row, modality, kind, output, raw[:len(tokens)], None, tokens, "tokens")
