"""Google's speech_embedding as a frozen audio encoder, run through onnxruntime.

Two ONNX models from one folder (``pkg:speech-embedding``, inside ``openwakeword==0.5.1``):

1. ``melspectrogram.onnx``: (B, N) 16 kHz samples on the 16-bit PCM scale -> (B, 1, F, 32) mel
   frames, one per 10 ms (F = N / 160 - 3), rescaled ``x / 10 + 2`` as the original TF-Hub model
   expects;
2. ``embedding_model.onnx``: (W, 76, 32, 1) windows of 76 frames (775 ms) -> (W, 1, 1, 96).

Input ``x``: (B, N, 1) waveform in [-1, 1] (``features: waveform``), ``mask`` (B, N). Output:
tokens (B, W, 96), one per window, a window every ``window_step`` frames; ``token_mask`` marks the
windows that end inside the clip's audio (the first always counts); pooled is their mean.
Nothing here trains, and the weights are the ONNX files (``weights_fingerprint`` hashes them).
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.config.encoders import SpeechEmbeddingConfig
from polymodal.errors import DecodeError, MissingDependencyError
from polymodal.models.encoders.base import Encoder, EncoderOutput
from polymodal.models.layers import masked_mean
from polymodal.models.registry import ENCODERS

MEL_FILE = "melspectrogram.onnx"
EMBEDDING_FILE = "embedding_model.onnx"
WINDOW = 76  # mel frames per embedding window (775 ms)
HOP = 160  # samples per mel frame at 16 kHz (10 ms)
LOST_FRAMES = 3  # the front end's frames = samples / HOP - LOST_FRAMES
PCM_SCALE = 32767.0


@ENCODERS.register(SpeechEmbeddingConfig)
class SpeechEmbedding(Encoder):
    """See the module docstring.

    Args:
        path: folder holding ``melspectrogram.onnx`` and ``embedding_model.onnx``.
        window_step: frames between consecutive windows (8 = 80 ms, the model's streaming step).
    """

    def __init__(self, path: Path, window_step: int = 8):
        super().__init__()
        self.path = Path(path)
        self.window_step = window_step
        self._models: dict[str, bytes] = {}
        for name in (MEL_FILE, EMBEDDING_FILE):
            file = self.path / name
            if not file.is_file():
                raise FileNotFoundError(f"encoder 'speech_embedding': {file} not found; path must be the folder "
                                        f"holding {MEL_FILE} and {EMBEDDING_FILE} (pkg:speech-embedding)")
            self._models[name] = file.read_bytes()
        self.pretrained = True
        self.output_dim = self._output_dim()

    @classmethod
    def from_config(cls, cfg: SpeechEmbeddingConfig, **_: Any) -> SpeechEmbedding:
        return cls(cfg.path, cfg.window_step)

    @cached_property
    def _sessions(self) -> tuple[Any, Any]:
        try:
            import onnxruntime as ort
            from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf
        except ImportError:
            raise MissingDependencyError("onnxruntime", "encoder 'speech_embedding'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        options.log_severity_level = 3
        sessions = []
        for name in (MEL_FILE, EMBEDDING_FILE):
            try:
                sessions.append(ort.InferenceSession(self._models[name], options, providers=["CPUExecutionProvider"]))
            except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf) as err:
                raise DecodeError(f"not a loadable ONNX model ({err})", path=str(self.path / name)) from None
        return sessions[0], sessions[1]

    def _output_dim(self) -> int:
        width = self._sessions[1].get_outputs()[0].shape[-1]
        if isinstance(width, int):
            return width
        probe = np.zeros((1, WINDOW, 32, 1), np.float32)
        return int(self._embed(probe).shape[-1])

    def _embed(self, windows: np.ndarray) -> np.ndarray:
        session = self._sessions[1]
        out = session.run(None, {session.get_inputs()[0].name: windows})[0]
        return out.reshape(windows.shape[0], -1)  # (W, 96)

    def __getstate__(self) -> dict[str, Any]:
        """Picklable / deep-copyable: the ONNX sessions are rebuilt from the stored model bytes."""
        state = dict(self.__dict__)
        state.pop("_sessions", None)
        return state

    def weights_fingerprint(self) -> str:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(f"{type(self).__qualname__}:{self.window_step}".encode())
        for name in (MEL_FILE, EMBEDDING_FILE):
            digest.update(self._models[name])
        return digest.hexdigest()

    def assets(self) -> dict[str, tuple[Path, list[str]]]:
        return {"path": (self.path, [MEL_FILE, EMBEDDING_FILE])}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> EncoderOutput:
        batch, samples = x.shape[0], x.shape[1]
        if samples < (WINDOW + LOST_FRAMES) * HOP:
            raise ValueError(f"encoder 'speech_embedding' needs at least {(WINDOW + LOST_FRAMES) * HOP} samples "
                             f"(0.79 s at 16 kHz); got {samples}")
        wave = (x.detach().reshape(batch, samples).float().cpu().numpy() * PCM_SCALE).astype(np.float32)
        mel_session = self._sessions[0]
        mel = mel_session.run(None, {mel_session.get_inputs()[0].name: wave})[0]  # (B, 1, F, 32)
        mel = mel.reshape(batch, -1, mel.shape[-1]) / 10.0 + 2.0  # (B, F, 32)
        starts = np.arange(0, mel.shape[1] - WINDOW + 1, self.window_step)
        windows = np.stack([mel[:, s:s + WINDOW] for s in starts], axis=1)  # (B, W, 76, 32)
        flat = windows.reshape(-1, WINDOW, mel.shape[-1], 1).astype(np.float32)
        tokens = torch.from_numpy(self._embed(flat).reshape(batch, len(starts), -1)).to(x.device)  # (B, W, D)
        lengths = mask.sum(dim=1) if mask is not None else torch.full((batch,), samples, device=x.device)
        frames = (lengths // HOP - LOST_FRAMES).clamp_min(WINDOW)  # (B,)
        ends = torch.as_tensor(starts + WINDOW, device=x.device)
        token_mask = ends.unsqueeze(0) <= frames.unsqueeze(1)  # (B, W); window 0 always fits
        return EncoderOutput(masked_mean(tokens, token_mask), tokens, token_mask)
