"""The ``anomaly:`` section: detection trained on normal samples (``task: anomaly``).

    task: anomaly
    target: label                     # optional: evaluation labels; training rows must be normal
    anomaly:
      scorer: autoencoder             # autoencoder | deep_svdd | mahalanobis | consistency
      normal: [Normal]                # target values that mean "normal"; every other value is an anomaly
      target_fpr: 0.05                # the flag threshold: this false-positive rate on validation normals
      # threshold: 3.2                # written by set_threshold(score=) / `polymodal threshold --score` only

Every scorer shares one network: the modalities' encoders, the fusion and a bias-free projection
to a ``latent_dim`` space (bias-free in that last layer only: see Deep SVDD in the README's Known limits). ``autoencoder`` trains per-modality decoders that reconstruct each
(preprocessed) input from the fused latent and scores the reconstruction error; ``deep_svdd``
pre-trains that autoencoder, then pulls the latents of normal samples towards their centre and
scores the distance to it (Ruff et al., 2018); ``mahalanobis`` fits a Gaussian (Ledoit-Wolf
shrinkage) to the autoencoder's latents of the training samples and scores the Mahalanobis
distance; ``consistency`` projects each modality into one shared space, aligns every pair of
modalities on the normal rows with symmetric InfoNCE (the batch's other rows are the mismatched
pairs) and scores the pairs' cosine dissimilarity: "these modalities do not belong together".
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, PositiveInt

from polymodal.config.base import StrictModel

Scorer = Literal["autoencoder", "deep_svdd", "mahalanobis", "consistency"]


class AnomalyConfig(StrictModel):
    """Anomaly detection settings.

    Attributes:
        scorer: how a sample is scored (see the module docstring); higher = more anomalous.
        normal: the target value(s) that mean normal; rows with another value are anomalies
            (training rows with another value are dropped unless ``use_labelled_anomalies``; a
            training manifest with no normal row is an error).
        target_fpr: the flag threshold lets ``floor(target_fpr x N)`` of the N validation normals
            above it (below 1/N that is none of them: the threshold is their highest score, and a
            fit warns). A fitted detector re-thresholds at another rate without retraining
            (``AnomalyDetector.set_threshold(fpr=)``, ``polymodal threshold RUN --fpr F``), which
            records the new rate here.
        threshold: the flag threshold as a score, when it was set as one on a fitted detector
            (``set_threshold(score=)``, ``polymodal threshold RUN --score S``), which records it
            here; None (default): the score at ``target_fpr``. A fit refuses a set value: a new
            fit's scores have a scale of their own.
        latent_dim: width of the fused latent space (and of the consistency scorer's shared space).
        recon_size: each modality's preprocessed input is average-pooled to this many values and
            reconstructed by a decoder MLP of ``decoder_hidden`` units (``autoencoder``,
            ``deep_svdd`` pre-training, ``mahalanobis``); token-id inputs (text) are not reconstructed.
        use_labelled_anomalies: False (default) drops training rows labelled anomalous before
            anything is fitted (preprocessing statistics included): training sees normal data only.
            True keeps a few labelled anomalies: Deep SVDD pushes them away from its centre
            (Deep SAD), the consistency scorer pulls their modalities apart; the reconstruction and the
            Gaussian still fit normal rows only.
        max_labelled_anomalies: with ``use_labelled_anomalies``, keep at most this many labelled
            anomalies in training: a random sample (seeded by ``train.seed``) drawn from each
            anomaly label in proportion to its rows, the rest dropped as without the option; None
            (default) keeps them all. A fit warns when the anomalies it keeps outnumber its normal
            training rows. Only used with ``use_labelled_anomalies: true``.
        pretrain_fraction: ``deep_svdd``: fraction of ``train.epochs`` spent pre-training the
            autoencoder before the centre is fixed.
    """

    scorer: Scorer = "autoencoder"
    normal: list[str | int] = Field(default_factory=lambda: ["normal", 0])
    target_fpr: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.05
    threshold: float | None = None
    latent_dim: PositiveInt = 32
    recon_size: Annotated[int, Field(ge=4, le=65_536)] = 1024
    decoder_hidden: PositiveInt = 256
    pretrain_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    use_labelled_anomalies: bool = False
    max_labelled_anomalies: Annotated[int, Field(ge=0)] | None = None


def anomaly_settings(config: Any) -> AnomalyConfig:
    """The config's ``anomaly`` section as it is now, its defaults when the config has none."""
    return config.anomaly if config.anomaly is not None else AnomalyConfig()


def unreconstructed(config: Any) -> set[str]:
    """The modalities an autoencoder does not reconstruct: texts (token ids), but those of a
    cached frozen encoder, whose stored outputs it reconstructs."""
    return {name for name, m in config.modalities.items() if m.kind == "text" and not m.encoder.cache}


def check_anomaly(config: Any) -> None:
    """Cross-field rules of ``task: anomaly`` (called by the root config's validator).

    Raises:
        ValueError: an ``anomaly`` section without ``task: anomaly``, a fusion that produces task
            outputs itself, further ``tasks``, ``align`` or ``transfer`` with anomaly detection,
            the consistency scorer with a single modality, or ``max_labelled_anomalies`` without
            ``use_labelled_anomalies``.
    """
    anomaly = getattr(config, "anomaly", None)
    if config.task != "anomaly":
        if anomaly is not None:
            raise ValueError(f"anomaly: the section is used by task 'anomaly' only; task is '{config.task}'")
        return
    if config.fusion.produces_outputs:
        raise ValueError(f"fusion.name: task 'anomaly' scores a fused latent; fusion '{config.fusion.name}' has none "
                         "(use concat, attention...)")
    for key in ("tasks", "align", "transfer"):
        if getattr(config, key, None) is not None:
            raise ValueError(f"{key}: task 'anomaly' does not combine with '{key}'; remove it")
    if anomaly is not None and anomaly.max_labelled_anomalies is not None and not anomaly.use_labelled_anomalies:
        raise ValueError(f"anomaly.max_labelled_anomalies: {anomaly.max_labelled_anomalies} limits the labelled "
                         "anomalies kept in training, but use_labelled_anomalies is false (every one is dropped); "
                         "set use_labelled_anomalies: true, or remove the key")
    scorer = anomaly.scorer if anomaly is not None else AnomalyConfig().scorer
    if scorer != "consistency" and unreconstructed(config) == set(config.modalities):
        raise ValueError(f"anomaly.scorer '{scorer}' learns by reconstructing the inputs, and texts are not "
                         f"reconstructed (their inputs are token ids): this config has only texts "
                         f"{sorted(config.modalities)}; add another modality, cache a frozen pretrained text "
                         "encoder (encoder.cache: true: its outputs are reconstructed), or use scorer 'consistency'")
    if anomaly is not None and anomaly.scorer == "consistency" and len(config.modalities) < 2:
        raise ValueError(f"anomaly.scorer 'consistency' compares modalities and needs at least 2; this config has "
                         f"{sorted(config.modalities)}")


__all__ = ["AnomalyConfig", "Scorer", "anomaly_settings", "check_anomaly", "unreconstructed"]
