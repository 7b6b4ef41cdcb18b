"""The network every anomaly scorer shares: encoders -> fusion -> a bias-free latent projection,
plus per-modality decoders (reconstruction) and per-modality projections into one shared space
(cross-modal consistency).

Plain ``nn.Module``s; no training, no file I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from polymodal.models import encoders as _encoders  # noqa: F401 - registration
from polymodal.models import fusion as _fusion  # noqa: F401 - registration
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.fusion.base import Fusion
from polymodal.models.model import Inputs, MultimodalNet, Present, build_encoders
from polymodal.models.objectives.align import capped_scale, hold_log_scale
from polymodal.models.projection import MlpProjection
from polymodal.models.registry import FUSIONS

if TYPE_CHECKING:  # the scorers build on this module
    from polymodal.anomaly.scorers import AnomalyScorer

# the key under which a batch carries a modality's reconstruction target computed beforehand: the
# rows of a cached frozen encoder, which hold its stored outputs instead of the input (see
# polymodal.anomaly.cached); no encoder takes it
STORED_TARGET = "reconstruction_target"


def reconstruction_target(x: torch.Tensor, size: int) -> torch.Tensor:
    """A fixed-size summary of one modality's preprocessed input: the flattened input,
    average-pooled (or repeated) to ``size`` values.

    Args:
        x: (B, ...) float input of any per-sample shape (image (C, H, W), signal (C, L),
            audio (T, F), video (T, C, H, W)).

    Returns:
        (B, size) float.
    """
    return F.adaptive_avg_pool1d(x.float().flatten(1).unsqueeze(1), size).squeeze(1)


def reconstructable(inputs: Mapping[str, torch.Tensor]) -> bool:
    """True when a modality's input ``x`` is a float tensor (token ids are not reconstructed)."""
    x = inputs.get("x")
    return x is not None and torch.is_floating_point(x)


def modality_target(inputs: Mapping[str, torch.Tensor], size: int) -> torch.Tensor | None:
    """A modality's reconstruction target (B, ``size``): the one its batch carries
    (:data:`STORED_TARGET`), else its float input's (:func:`reconstruction_target`); None for a
    modality that is not reconstructed (token ids). A video clip's real frames are spread over
    its ``frames`` slots first (:func:`real_frames`)."""
    stored = inputs.get(STORED_TARGET)
    if stored is not None:
        return stored
    if not reconstructable(inputs):
        return None
    x, mask = inputs["x"], inputs.get("mask")
    if x.dim() == 5 and mask is not None:  # a video (B, T, C, H, W) and its real frames (B, T)
        x = real_frames(x, mask)
    return reconstruction_target(x, size)


def real_frames(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Clips (B, T, ...) whose real frames (``mask`` (B, T), the first ones: ``stride`` sampling
    pads a short clip at its end) are spread over all T slots in order, each repeated as often as
    it takes: the padding frames, which the encoder masks and so cannot tell the decoder of, leave
    the target, and a clip reads alike whatever its length."""
    length = mask.sum(dim=1).clamp_min(1)  # (B,)
    slots = torch.arange(x.shape[1], device=x.device)
    index = (slots.unsqueeze(0) * length.unsqueeze(1)) // x.shape[1]  # (B, T): slot t reads frame t * length // T
    return x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), index]


class ScoredFeatures(NamedTuple):
    """What a scorer scores rows from: every modality's encoder output and, for a scorer that
    reconstructs, its reconstruction target (None for a modality that is not reconstructed: token
    ids; no entries for a scorer that does not reconstruct). Computed once per batch, they can be
    scored under several presence masks (modality attribution)."""

    encoded: dict[str, EncoderOutput]
    targets: dict[str, torch.Tensor | None]


class AnomalyNet(nn.Module):
    """Encoders (one per modality) -> fusion -> latent (B, L); decoders and shared-space
    projections on top.

    Args:
        encoders: by modality name.
        fusion: combines the encoder outputs into one (B, D) vector.
        latent_dim: L, width of the bias-free latent projection (no bias of its own for Deep
            SVDD to map every input onto its centre with; the layers before it have theirs: see
            :class:`~polymodal.anomaly.scorers.DeepSvddScorer`).
        recon_size: values each modality's decoder reconstructs (see :func:`reconstruction_target`).
        decoder_hidden: hidden units of each decoder MLP and of each shared-space projection.
    """

    def __init__(self, encoders: Mapping[str, Encoder], fusion: Fusion, latent_dim: int, recon_size: int,
                 decoder_hidden: int):
        super().__init__()
        # reuse the classifier's encode step (present-only encoding, cached-feature inputs)
        self.backbone = MultimodalNet(encoders, fusion, None)
        self.names = self.backbone.names
        self.recon_size = recon_size
        self.latent = nn.Linear(fusion.output_dim, latent_dim, bias=False)
        self.decoders = nn.ModuleDict({
            n: nn.Sequential(nn.Linear(latent_dim, decoder_hidden), nn.ReLU(), nn.Linear(decoder_hidden, recon_size))
            for n in self.names
        })
        # each modality's encoder output -> the shared (aligned) space of the consistency scorer
        self.pair_projections = nn.ModuleDict({
            n: MlpProjection(encoders[n].output_dim, latent_dim, hidden=(decoder_hidden,), dropout=0.0)
            for n in self.names
        })
        # CLIP's learnable temperature, stored (and named) as CLIP stores it: the log of 1 / temperature
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.latent_dim = latent_dim

    @property
    def encoders(self) -> nn.ModuleDict:
        """The encoders by modality name (the optimiser gives pretrained ones their own rate)."""
        return self.backbone.encoders

    def encode(self, inputs: Inputs, present: Present) -> dict[str, EncoderOutput]:
        """Every modality's encoder output (zeros where it is absent); a reconstruction target a
        batch carries (:data:`STORED_TARGET`) is not the encoder's to read."""
        return self.backbone.encode({n: {k: v for k, v in inputs[n].items() if k != STORED_TARGET}
                                     for n in self.names}, present)

    def fuse(self, features: Mapping[str, EncoderOutput], present: Present) -> torch.Tensor:
        """The fused representation (B, D)."""
        return self.backbone.fusion(features, present).pooled

    def features(self, inputs: Inputs, present: Present, *, targets: bool = True) -> ScoredFeatures:
        """Every modality's encoder output (zeros where it is absent) and, with ``targets``, its
        reconstruction target."""
        wanted = {n: modality_target(inputs[n], self.recon_size) for n in self.names} if targets else {}
        return ScoredFeatures(self.encode(inputs, present), wanted)

    def latent_of(self, encoded: Mapping[str, EncoderOutput], present: Present) -> torch.Tensor:
        """The latent (B, L) of encoder outputs fused under ``present`` (which may hide more
        modalities than were encoded: the fusion masks them)."""
        return self.latent(self.fuse(encoded, present))

    def forward(self, inputs: Inputs, present: Present) -> torch.Tensor:
        """The latent (B, L) of each sample."""
        return self.latent_of(self.encode(inputs, present), present)

    def reconstruction_errors(self, targets: Mapping[str, torch.Tensor | None], present: Present, z: torch.Tensor
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample, per-modality mean squared reconstruction error from the latent.

        Args:
            targets: each modality's reconstruction target (B, S), None where not reconstructed
                (:meth:`features`).

        Returns:
            errors (B, M) and a mask (B, M), True where the modality is present and
            reconstructable; modalities in sorted name order.
        """
        errors, masks = [], []
        for name in self.names:
            target = targets[name]
            if target is None:
                errors.append(z.new_zeros(z.shape[0]))
                masks.append(torch.zeros_like(present[name]))
                continue
            errors.append((self.decoders[name](z) - target).pow(2).mean(dim=1))
            masks.append(present[name])
        return torch.stack(errors, dim=1), torch.stack(masks, dim=1)

    def shared_embeddings(self, features: Mapping[str, EncoderOutput]) -> dict[str, torch.Tensor]:
        """Each modality's unit-length embedding (B, L) in the shared space."""
        return {n: F.normalize(self.pair_projections[n](features[n].pooled), dim=-1) for n in self.names}

    def similarity_scale(self) -> torch.Tensor:
        """1 / temperature of the shared-space similarities (clamped as alignment's is, as in CLIP)."""
        return capped_scale(self.logit_scale)

    def constrain(self) -> None:
        """After an optimiser step (see :func:`~polymodal.models.objectives.align.hold_log_scale`)."""
        hold_log_scale(self.logit_scale)

    def pair_agreement(self, features: Mapping[str, EncoderOutput], present: Present
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarity of every modality pair of each row in the shared space.

        Returns:
            similarities (B, P) and a mask (B, P), True where both modalities are present;
            pairs ``itertools.combinations`` of the sorted names.
        """
        z = self.shared_embeddings(features)
        sims, masks = [], []
        for a, b in itertools.combinations(self.names, 2):
            sims.append((z[a] * z[b]).sum(dim=-1))
            masks.append(present[a].bool() & present[b].bool())
        return torch.stack(sims, dim=1), torch.stack(masks, dim=1)


def build_anomaly_net(config: Any, contexts: Mapping[str, Mapping[str, Any]]) -> AnomalyNet:
    """The network for a ``task: anomaly`` config.

    Args:
        contexts: per modality, what its fitted preprocessor says about the input.
    """
    from polymodal.config.anomaly import AnomalyConfig

    settings = config.anomaly if config.anomaly is not None else AnomalyConfig()
    encoders = build_encoders(config, contexts)
    dims = {name: enc.output_dim for name, enc in encoders.items()}
    fusion = FUSIONS.build(config.fusion, dims=dims, n_outputs=1, head=config.head)
    return AnomalyNet(encoders, fusion, settings.latent_dim, settings.recon_size, settings.decoder_hidden)


class AnomalyModel(nn.Module):
    """The network and its scorer (whose fitted statistics are buffers): one state dict.

    Like :class:`~polymodal.models.model.MultimodalNet` it scores in two steps, :meth:`encode`
    then :meth:`outputs_from_features`, so that modality attribution and subset evaluation
    encode a batch once and score it under many presence masks
    (:mod:`polymodal.evaluation.coalitions`)."""

    def __init__(self, net: AnomalyNet, scorer: AnomalyScorer):
        super().__init__()
        self.net = net
        self.scorer = scorer

    @property
    def names(self) -> list[str]:
        """The modality names, sorted."""
        return self.net.names

    @property
    def encoders(self) -> nn.ModuleDict:
        """The encoders by modality name."""
        return self.net.encoders

    def encode(self, inputs: Inputs, present: Present) -> ScoredFeatures:
        """What the scorer scores from (:meth:`AnomalyNet.features`)."""
        return self.net.features(inputs, present, targets=self.scorer.reconstructs)

    def outputs_from_features(self, features: ScoredFeatures, present: Present) -> torch.Tensor:
        """(B, 1) scores of encoded rows; ``present`` may hide more modalities than were encoded."""
        return self.scorer.score_features(self.net, features, present).unsqueeze(1)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """(B,) anomaly scores."""
        return self.scorer.score(self.net, batch)


class ScoreNetwork(nn.Module):
    """An anomaly model with a classifier's face, ``(inputs, present) -> (B, 1)`` scores: what
    :meth:`~polymodal.estimator.Estimator.output_network` gives and an export traces."""

    def __init__(self, model: AnomalyModel):
        super().__init__()
        self.model = model

    def forward(self, inputs: Inputs, present: Present) -> torch.Tensor:
        return self.model({"inputs": inputs, "present": present}).unsqueeze(1)
