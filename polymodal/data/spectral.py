"""Batched spectral features on torch: power spectrogram, log-mel, MFCC.

These match librosa (``melspectrogram`` with a periodic Hann window, ``center=True`` and zero
padding; ``power_to_db`` with ``top_db`` taken per clip, or none; ``mfcc`` with an orthonormal DCT-II) to float
precision, but run once over a whole batch instead of once per clip.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

AMIN = 1e-10


def stft_power(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Power spectrogram.

    Args:
        x: (B, N) waveforms.

    Returns:
        (B, T, n_fft // 2 + 1) power, T = :func:`frames` (N, hop, n_fft).
    """
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                      pad_mode="constant", return_complex=True)  # (B, F, T)
    return (spec.real.square() + spec.imag.square()).transpose(1, 2)  # |.|^2 without a square root


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) Slaney-normalised mel filterbank from librosa."""
    import librosa

    bank = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    return torch.from_numpy(bank.T.astype(np.float32))


@lru_cache(maxsize=16)
def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_in, n_out) orthonormal DCT-II, the transform ``librosa.feature.mfcc`` applies."""
    from scipy.fft import dct

    return torch.from_numpy(dct(np.eye(n_in), type=2, norm="ortho", axis=1)[:, :n_out].astype(np.float32))  # row i = DCT of e_i


def power_to_db(power: torch.Tensor, top_db: float | None = None) -> torch.Tensor:
    """10 log10(max(power, 1e-10)), librosa's ``power_to_db(ref=1.0, top_db=top_db)`` of each
    clip: (B, T, F) power; with ``top_db``, values below a clip's peak minus ``top_db`` are raised
    to it."""
    db = 10.0 * torch.log10(power.clamp_min(AMIN))
    if top_db is not None:
        db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - top_db)
    return db


def log_mel(x: torch.Tensor, sample_rate: int, n_fft: int, hop: int, n_mels: int, fmin: float = 0.0,
            fmax: float | None = None, top_db: float | None = None) -> torch.Tensor:
    """(B, N) waveforms -> (B, T, n_mels) log-mel energies in dB."""
    bank = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax).to(x.device, x.dtype)
    return power_to_db(stft_power(x, n_fft, hop) @ bank, top_db)


def mfcc(x: torch.Tensor, sample_rate: int, n_fft: int, hop: int, n_mels: int, n_mfcc: int, fmin: float = 0.0,
         fmax: float | None = None, top_db: float | None = None) -> torch.Tensor:
    """(B, N) waveforms -> (B, T, n_mfcc) MFCCs."""
    mel_db = log_mel(x, sample_rate, n_fft, hop, n_mels, fmin, fmax, top_db)
    return mel_db @ dct_matrix(n_mels, n_mfcc).to(x.device, x.dtype)


def frames(n_samples: int, hop: int, n_fft: int) -> int:
    """Frames a centred STFT of ``n_fft`` gives for ``n_samples`` samples (padded by ``n_fft // 2``
    on both sides): ``1 + n_samples // hop`` for an even ``n_fft``, one fewer for an odd one when
    ``hop`` divides ``n_samples`` (441 samples at 44.1 kHz and 10 ms)."""
    return 1 + (n_samples + 2 * (n_fft // 2) - n_fft) // hop
