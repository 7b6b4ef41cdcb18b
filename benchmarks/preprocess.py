"""Featurisation throughput against the straightforward per-file loop.

1. Audio: all 3,000 FSDD clips -> log-mel (8 kHz, 1 s, 25 ms frames, 10 ms hop, 40 mels), with
   polymodal's encoder (decode in worker processes, batched torch STFT + mel filterbank) against a per-file
   ``librosa.load`` + ``librosa.feature.melspectrogram`` + ``power_to_db`` loop.
2. Images: the 10,000 MNIST test digits as PNG files, decoded and resized to 56x56 RGB, with
   polymodal's encoder against a per-file Pillow loop.

Both sides are warmed up first; figures are medians over ``--repeats`` runs.

    python benchmarks/preprocess.py --data-root ../shared/data
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import median_time, parser, require_data, save

from polymodal.config import load_config
from polymodal.data.datasets.base import read_idx_images, save_images
from polymodal.data.encode import encode_modality
from polymodal.data.manifest import read_manifest
from polymodal.data.modalities import build_preprocessor

SR, N_FFT, HOP, N_MELS = 8000, 200, 80, 40


def polymodal_encoder(kind: str, column: str, preprocess: dict):
    cfg = load_config({"target": "y", "modalities": {column: {"kind": kind, "column": column, "preprocess": preprocess}}})
    prep = build_preprocessor(cfg.modalities[column], column)

    def run(files: list[str]) -> np.ndarray:
        manifest = read_manifest(pd.DataFrame({column: files}))
        encoded, _ = encode_modality(prep, files, manifest)
        return encoded.arrays["x"]

    return run


def librosa_loop(files: list[str]) -> list[np.ndarray]:
    import librosa

    out = []
    for path in files:
        wave, _ = librosa.load(path, sr=SR)
        wave = np.pad(wave, (0, max(0, SR - len(wave))))[:SR]
        mel = librosa.feature.melspectrogram(y=wave, sr=SR, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, n_mels=N_MELS)
        out.append(librosa.power_to_db(mel, top_db=None).T)
    return out


def pillow_loop(files: list[str]) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(p).convert("RGB").resize((56, 56), Image.Resampling.BILINEAR)) for p in files]


def main() -> None:
    args = parser(__doc__.split("\n")[0]).parse_args()
    clips = sorted(str(p) for p in require_data(args.data_root, "fsdd", "recordings").glob("*.wav"))
    digits = read_idx_images(require_data(args.data_root, "mnist", "t10k-images-idx3-ubyte.gz"))
    if args.quick:
        clips, digits = clips[:300], digits[:1000]
    audio = polymodal_encoder("audio", "audio", {"sample_rate": SR, "max_seconds": 1.0, "features": "log_mel",
                                                 "n_mels": N_MELS, "frame_ms": 25, "hop_ms": 10})
    ours = audio(clips[:100]), librosa_loop(clips[:100])  # warm-up (imports, filterbanks, numba)
    reference = np.stack(ours[1])
    max_diff = float(np.abs(ours[0][:100] - reference).max())
    t_ours, _ = median_time(lambda: audio(clips), args.repeats)
    t_loop, _ = median_time(lambda: librosa_loop(clips), args.repeats)
    audio_rows = [
        {"method": "polymodal (decode in worker processes + batched torch STFT/mel)", "clips": len(clips), "seconds": t_ours,
         "clips_per_s": len(clips) / t_ours, "speed-up": t_loop / t_ours},
        {"method": "per-file librosa loop", "clips": len(clips), "seconds": t_loop, "clips_per_s": len(clips) / t_loop,
         "speed-up": 1.0},
    ]
    with tempfile.TemporaryDirectory() as tmp:
        files = [str(Path(tmp) / p) for p in save_images(digits, Path(tmp) / "png", "d")]
        image = polymodal_encoder("image", "image", {"size": 56, "color": "rgb", "resize": "stretch"})
        image(files[:100]), pillow_loop(files[:100])
        t_img, _ = median_time(lambda: image(files), args.repeats)
        t_pil, _ = median_time(lambda: pillow_loop(files), args.repeats)
    image_rows = [
        {"method": "polymodal (Pillow decode + resize in worker processes)", "images": len(files), "seconds": t_img,
         "images_per_s": len(files) / t_img, "speed-up": t_pil / t_img},
        {"method": "per-file Pillow loop", "images": len(files), "seconds": t_pil, "images_per_s": len(files) / t_pil,
         "speed-up": 1.0},
    ]
    save("preprocess", "Featurisation throughput (issue 2 target: >= 3x the per-file loop; issue 7: >= 5x)",
         {f"FSDD log-mel ({len(clips):,} clips)": audio_rows, "MNIST PNG decode + resize to 56x56 RGB": image_rows},
         notes=[f"max |polymodal - librosa| log-mel difference on 100 clips: {max_diff:.2e} dB",
                f"medians of {args.repeats} runs after a warm-up"])


if __name__ == "__main__":
    main()
