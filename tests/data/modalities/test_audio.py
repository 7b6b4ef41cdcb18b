"""Audio preprocessing: decoding, resampling, crop/pad, features against librosa, normalisation,
training-time augmentation."""

from __future__ import annotations

import struct

import librosa
import numpy as np
import pytest
import soundfile
import torch

from polymodal.config.preprocess import AudioAugment, AudioPreprocess
from polymodal.data.modalities.audio import AudioPreprocessor, read_audio, spec_augment, stretch_axes
from polymodal.errors import DecodeError

from ..helpers import as_tensors, encode_values, tone, write_wav

SR = 8000


def audio(**options) -> AudioPreprocessor:
    settings = {"sample_rate": SR, "max_seconds": 0.5, "frame_ms": 32, "hop_ms": 10, "n_mels": 32,
                "normalize": "none", **options}
    return AudioPreprocessor("spoken", AudioPreprocess(**settings))


def librosa_log_mel(wave: np.ndarray, prep: AudioPreprocessor) -> np.ndarray:
    """librosa's log-mel of a clip with ``prep``'s settings (its ``top_db`` too)."""
    cfg = prep.cfg
    power = librosa.feature.melspectrogram(
        y=wave, sr=cfg.sample_rate, n_fft=prep.n_fft, win_length=prep.n_fft, hop_length=prep.hop, window="hann",
        center=True, pad_mode="constant", power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=cfg.top_db)  # (n_mels, T)


@pytest.fixture
def clips(tmp_path):
    """Two clips at the model's rate: a full 0.5 s one and a 0.2 s one (padded by decode)."""
    return [write_wav(tmp_path / "long.wav", tone(440, 0.5, SR, seed=1), SR),
            write_wav(tmp_path / "short.wav", tone(1200, 0.2, SR, seed=2), SR)]


@pytest.mark.parametrize("top_db", [None, 80.0])  # 80: librosa's default, which the padded clip reaches
@pytest.mark.parametrize("band", [{}, {"fmin": 100.0, "fmax": 3000.0}])
def test_log_mel_matches_librosa(clips, band, top_db):
    prep = audio(features="log_mel", top_db=top_db, **band)
    decoded = [prep.decode(path) for path in clips]
    x = prep.featurize(decoded)["x"]
    for i, (wave, *_) in enumerate(decoded):
        np.testing.assert_allclose(x[i], librosa_log_mel(wave, prep).T, atol=2e-3, rtol=0)
    floor = x[1].max() - 80.0  # the short clip's padding: -100 dB, or clipped to 80 dB below its peak
    assert (x[1].min() == pytest.approx(floor, abs=1e-3)) == (top_db is not None)


def test_an_odd_frame_gives_the_frame_count_the_stft_gives(clips):
    """n_fft 201 (25.125 ms at 8 kHz: odd, as 441 samples are at 44.1 kHz and 10 ms), a hop of 80
    that divides the 4,000 samples: the centred STFT gives 1 + 3,999 // 80 = 50 frames, not 51;
    the spec said 51, and encoding failed writing the 50 it made."""
    prep = audio(features="log_mel", frame_ms=25.125)
    assert prep.n_fft % 2 == 1 and prep.n_samples % prep.hop == 0
    decoded = [prep.decode(path) for path in clips]
    arrays = prep.featurize(decoded)
    assert arrays["x"].shape[1:] == prep.spec()["x"].shape == (50, 32)
    assert (arrays["length"] <= 50).all()
    np.testing.assert_allclose(arrays["x"][0], librosa_log_mel(decoded[0][0], prep).T, atol=2e-3, rtol=0)


@pytest.mark.parametrize("top_db", [None, 80.0])
def test_mfcc_matches_librosa(clips, top_db):
    prep = audio(features="mfcc", n_mfcc=13, top_db=top_db)
    decoded = [prep.decode(path) for path in clips]
    x = prep.featurize(decoded)["x"]
    for i, (wave, *_) in enumerate(decoded):
        ref = librosa.feature.mfcc(S=librosa_log_mel(wave, prep), n_mfcc=13, dct_type=2, norm="ortho")
        np.testing.assert_allclose(x[i], ref.T, atol=2e-3, rtol=0)
    if top_db is not None:  # librosa's own MFCC from the waveform (its top_db is 80) agrees
        cfg = prep.cfg
        ref = librosa.feature.mfcc(y=decoded[1][0], sr=SR, n_mfcc=13, n_fft=prep.n_fft, hop_length=prep.hop,
                                   n_mels=cfg.n_mels, pad_mode="constant")
        np.testing.assert_allclose(x[1], ref.T, atol=2e-3, rtol=0)


@pytest.mark.parametrize("top_db", [None, 60.0])
def test_spectrogram_matches_librosa(clips, top_db):
    prep = audio(features="spectrogram", top_db=top_db)
    decoded = [prep.decode(path) for path in clips]
    x = prep.featurize(decoded)["x"]
    assert x.shape == (2, prep.n_frames, prep.n_fft // 2 + 1)
    for i, (wave, *_) in enumerate(decoded):
        stft = librosa.stft(wave, n_fft=prep.n_fft, hop_length=prep.hop, win_length=prep.n_fft, window="hann",
                            center=True, pad_mode="constant")
        ref = librosa.power_to_db(np.abs(stft) ** 2, ref=1.0, amin=1e-10, top_db=top_db)
        np.testing.assert_allclose(x[i], ref.T, atol=2e-3, rtol=0)


def test_top_db_on_waveforms_is_refused():
    with pytest.raises(ValueError, match="top_db clips dB features .*features is 'waveform'"):
        AudioPreprocess(features="waveform", top_db=80)


def test_waveform_features_are_the_samples(clips):
    prep = audio(features="waveform")
    decoded = [prep.decode(path) for path in clips]
    arrays = prep.featurize(decoded)
    assert arrays["x"].shape == (2, 4000, 1)
    np.testing.assert_array_equal(arrays["x"][0, :, 0], decoded[0][0])
    assert arrays["length"].tolist() == [4000, 1600]


def dominant_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_resampling_to_the_configured_rate(tmp_path):
    path = write_wav(tmp_path / "hi.wav", tone(1000, 0.5, 16_000, noise=0.0), 16_000)
    wave, valid, *_ = audio(max_seconds=0.5).decode(path)
    assert len(wave) == valid == 4000  # 0.5 s at 8 kHz, not 8000 samples
    assert dominant_frequency(wave, SR) == pytest.approx(1000, abs=2)
    expected = tone(1000, 0.5, SR, noise=0.0)
    np.testing.assert_allclose(wave[200:-200], expected[200:-200], atol=0.02)


@pytest.mark.parametrize(("crop", "start"), [("start", 0), ("center", 2000)])
def test_long_clips_are_cropped(tmp_path, crop, start):
    wave = tone(300, 1.5, SR)
    decoded, valid, *_ = audio(max_seconds=1.0, crop=crop).decode(write_wav(tmp_path / "a.wav", wave, SR))
    assert valid == 8000
    np.testing.assert_array_equal(decoded, wave[start:start + 8000])


def test_short_clips_are_zero_padded(tmp_path):
    wave = tone(300, 0.25, SR)
    decoded, valid, *_ = audio(max_seconds=1.0).decode(write_wav(tmp_path / "a.wav", wave, SR))
    assert valid == 2000 and len(decoded) == 8000
    np.testing.assert_array_equal(decoded[:2000], wave)
    assert not decoded[2000:].any()


@pytest.mark.parametrize("subtype", ["FLOAT", "PCM_16"])
def test_stereo_is_mixed_down_to_mono(tmp_path, subtype):
    left, right = tone(300, 0.5, SR, seed=1), tone(700, 0.5, SR, seed=2)
    path = write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), SR, subtype=subtype)
    decoded, _, *_ = audio().decode(path)
    stored = soundfile.read(path, dtype="float32")[0]  # what the file holds after quantisation
    np.testing.assert_allclose(decoded, stored.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(decoded, (left + right) / 2, atol=1e-6 if subtype == "FLOAT" else 1e-4)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_wav_encodings_decode_to_the_same_waveform(tmp_path, subtype):
    wave = tone(440, 0.5, SR)
    path = write_wav(tmp_path / f"{subtype}.wav", wave, SR, subtype=subtype)
    decoded, valid, *_ = audio().decode(path)
    assert decoded.dtype == np.float32 and valid == 4000
    np.testing.assert_allclose(decoded, soundfile.read(path, dtype="float32")[0], atol=1e-6)


@pytest.mark.parametrize("rate", [SR, 16_000], ids=["model-rate", "resampled"])
def test_flac_decodes_to_the_samples_of_the_same_16_bit_wav(tmp_path, rate):
    """FLAC is lossless: it decodes (mixed down and resampled alike) to what the WAV decodes to.
    The samples are written as integers: libsndfile rounds floats to 16 bits differently per format."""
    stereo = np.stack([tone(440, 0.5, rate, seed=1), tone(700, 0.5, rate, seed=2)], axis=1)
    pcm = np.round(stereo * 32767).astype(np.int16)
    wav, wav_valid, *_ = audio().decode(write_wav(tmp_path / "a.wav", pcm, rate, subtype="PCM_16"))
    flac, flac_valid, *_ = audio().decode(write_wav(tmp_path / "a.flac", pcm, rate, subtype="PCM_16"))
    assert flac.dtype == np.float32 and flac_valid == wav_valid == 4000
    np.testing.assert_array_equal(flac, wav)
    if rate == SR:
        np.testing.assert_allclose(flac, pcm.mean(axis=1) / 32768, atol=1e-7)


def test_ogg_vorbis_decodes_to_the_waveform_within_the_codec_error(tmp_path):
    wave = tone(440, 0.5, SR, seed=3)
    decoded, valid, *_ = audio().decode(write_wav(tmp_path / "a.ogg", wave, SR, subtype="VORBIS"))
    assert decoded.dtype == np.float32 and len(decoded) == valid == 4000
    assert np.corrcoef(decoded, wave)[0, 1] > 0.9, "lossy, but the same waveform, aligned in time"
    assert dominant_frequency(decoded, SR) == pytest.approx(440, abs=2)
    assert np.abs(decoded - wave).mean() < 0.1 * np.abs(wave).mean()


def test_npy_waveforms_are_read_at_the_configured_rate(tmp_path):
    wave = tone(300, 0.5, SR)
    np.save(tmp_path / "w.npy", wave)
    decoded, valid, *_ = audio().decode(str(tmp_path / "w.npy"))
    np.testing.assert_array_equal(decoded, wave)
    assert valid == 4000


def test_lengths_and_mask_follow_the_valid_samples(clips):
    prep = audio(features="log_mel")
    arrays = encode_values(prep, clips)
    assert arrays["length"].tolist() == [prep.n_frames, 1 + 1600 // prep.hop]
    batch = prep.to_batch(as_tensors(arrays), train=False)
    mask = batch["mask"]
    assert mask.shape == (2, prep.n_frames)
    assert mask.sum(dim=1).tolist() == arrays["length"].tolist()
    assert mask[1, : arrays["length"][1]].all() and not mask[1, arrays["length"][1]:].any()
    assert not batch["x"][~mask].any()  # padding frames are zeroed


def test_global_normalisation_uses_training_statistics(tmp_path):
    prep = audio(features="log_mel", normalize="global")
    train = encode_values(prep, [write_wav(tmp_path / f"t{i}.wav", tone(200 + 300 * i, 0.1 + 0.1 * i, SR, seed=i), SR)
                                 for i in range(3)])
    prep.fit_features(train)
    valid_frames = np.concatenate([x[:n] for x, n in zip(train["x"], train["length"])])  # padding excluded
    np.testing.assert_allclose(prep.mean, valid_frames.mean(axis=0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(prep.std, valid_frames.std(axis=0), rtol=1e-4, atol=1e-3)

    test = encode_values(prep, [write_wav(tmp_path / "new.wav", tone(900, 0.5, SR, seed=9), SR)])
    out = prep.to_batch(as_tensors(test), train=False)["x"]
    expected = (test["x"] - prep.mean) / prep.std
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-4)


def test_global_normalisation_before_fit_is_refused(clips):
    prep = audio(normalize="global")
    with pytest.raises(RuntimeError, match="before fit"):
        prep.to_batch(as_tensors(encode_values(prep, clips)), train=False)


def test_utterance_normalisation_standardises_each_clip_over_its_valid_frames(clips):
    prep = audio(features="log_mel", normalize="utterance")
    batch = prep.to_batch(as_tensors(encode_values(prep, clips)), train=False)
    x, mask = batch["x"].double(), batch["mask"]
    for i in range(2):
        frames = x[i][mask[i]]  # (valid T, F)
        torch.testing.assert_close(frames.mean(dim=0), torch.zeros(frames.shape[1], dtype=torch.float64),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(frames.std(dim=0, unbiased=False), torch.ones(frames.shape[1], dtype=torch.float64),
                                   atol=1e-3, rtol=0)
        assert not x[i][~mask[i]].any()


def test_corrupt_wav_names_the_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x01" * 40)
    with pytest.raises(DecodeError, match="corrupt audio") as info:
        audio().decode(str(path))
    assert info.value.path == str(path)
    assert str(path) in str(info.value)


def test_wav_with_a_chunk_past_the_end_is_a_decode_error(tmp_path):
    """The standard library's parser raises a bare RuntimeError on this one."""
    path = tmp_path / "long_chunk.wav"
    path.write_bytes(b"RIFF" + (16).to_bytes(4, "little") + b"WAVEjunk" + (1 << 24).to_bytes(4, "little") + b"\0" * 4)
    with pytest.raises(DecodeError, match="corrupt audio") as info:
        audio().decode(str(path))
    assert info.value.path == str(path)


def truncated_wav() -> bytes:
    """A 16-bit mono PCM WAV whose data chunk claims 100 bytes but holds 3 (one whole sample)."""
    fmt = struct.pack("<HHIIHH", 1, 1, SR, SR * 2, 2, 16)  # PCM, mono, rate, byte rate, block align, bits
    return (b"RIFF" + struct.pack("<I", 36 + 100) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", 100) + b"\x01\x02\x03")


def test_a_truncated_wav_is_a_decode_error(tmp_path):
    """Not a shorter clip: the header declares 50 frames and the file holds one."""
    path = tmp_path / "truncated.wav"
    path.write_bytes(truncated_wav())
    with pytest.raises(DecodeError, match="truncated WAV: header declares 50 frames, the file holds 1") as info:
        read_audio(str(path))
    assert info.value.path == str(path)


def test_empty_wav_is_a_decode_error(tmp_path):
    path = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(DecodeError, match="no samples"):
        audio().decode(path)


def test_encoder_context_describes_the_features():
    prep = audio(features="mfcc", n_mfcc=13, max_seconds=1.0)
    assert prep.encoder_context() == {"n_features": 13, "n_frames": 1 + 8000 // 80}


def test_stretch_axes_is_the_identity_at_one_and_rescales_each_axis_from_index_zero():
    frames, bins = 6, 9
    ramp = torch.arange(bins, dtype=torch.float32).expand(2, frames, bins)  # x[b, t, j] = j
    same = stretch_axes(ramp, torch.ones(2), torch.ones(2))
    torch.testing.assert_close(same, ramp)
    out = stretch_axes(ramp, torch.ones(2), torch.tensor([2.0, 0.5]))
    k = torch.arange(bins, dtype=torch.float32)
    torch.testing.assert_close(out[0], (k / 2).expand(frames, bins))  # stretched: bin k reads bin k/2
    shrunk = torch.where(2 * k <= bins - 1, 2 * k, torch.zeros(()))  # squeezed: bin k reads 2k, zeros past the end
    torch.testing.assert_close(out[1], shrunk.expand(frames, bins))
    steps = torch.arange(frames, dtype=torch.float32)[None, :, None].expand(1, frames, bins)  # x[0, t, j] = t
    torch.testing.assert_close(stretch_axes(steps, torch.tensor([2.0]), torch.ones(1))[0], (steps[0] / 2))


def test_shift_rolls_each_clip_within_its_own_frames():
    """A 5-frame clip padded to 8: the roll stays inside the 5 frames, whatever the padding held."""
    x = torch.arange(1.0, 17.0).view(2, 8, 1).repeat(1, 1, 3)
    lengths = torch.tensor([5, 8])
    torch.manual_seed(0)
    out = spec_augment(x, lengths, AudioAugment(time_masks=0, freq_masks=0, shift=3))
    for row, length in enumerate(lengths.tolist()):
        valid, rolled = x[row, :length, 0].tolist(), out[row, :length, 0].tolist()
        assert sorted(rolled) == valid and any(rolled[k:] + rolled[:k] == valid for k in range(length))
        assert out[row, length:, 0].tolist() == x[row, length:, 0].tolist()  # padding left where it was


def test_spec_augment_masks_bands_and_warps_only_when_asked():
    torch.manual_seed(0)
    x = torch.randn(16, 40, 24) + 5.0  # no value is 0 before masking
    lengths = torch.full((16,), 40)
    masked = spec_augment(x, lengths, AudioAugment(time_masks=1, time_width=5, freq_masks=1, freq_width=3))
    zero = masked == 0
    kept = ~zero
    assert torch.equal(masked[kept], x[kept])  # masking only zeroes; nothing else moves
    freq_band = zero.all(dim=1)  # (B, F) bins zeroed over every frame
    time_band = zero.all(dim=2)  # (B, T)
    assert torch.equal(zero, freq_band[:, None, :] | time_band[:, :, None])
    assert freq_band.sum(dim=1).max() <= 3 and time_band.sum(dim=1).max() <= 5
    assert freq_band.any() and time_band.any()
    unwarped = spec_augment(x, lengths, AudioAugment(time_masks=0, freq_masks=0))
    assert torch.equal(unwarped, x)
    warped = spec_augment(x, lengths, AudioAugment(time_masks=0, freq_masks=0, warp=0.2, stretch=0.1))
    assert warped.shape == x.shape and not torch.allclose(warped, x)
    torch.testing.assert_close(warped[:, 0, 0], x[:, 0, 0])  # anchored at the first frame and lowest bin


def waveform_batch(prep: AudioPreprocessor, clips: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, 1) waveforms of no zero sample, each ``prep``'s full length, and their lengths."""
    x = torch.rand(clips, prep.n_samples, 1) + 0.5
    return x, torch.full((clips,), prep.n_samples)


def test_waveform_augment_masks_time_spans_of_hop_samples_and_never_a_frequency_band():
    """On a waveform the one 'bin' is the sample value, not a frequency: the default frequency masks
    would zero whole clips. Time masks span time_width frames of hop samples, as on frames."""
    prep = audio(features="waveform", augment={})  # the default masks: 2 time, 2 frequency
    x, lengths = waveform_batch(prep, 200)
    torch.manual_seed(0)
    out = prep.to_batch({"x": x, "length": lengths}, train=True)["x"]
    zero = (out == 0).squeeze(-1)  # (B, N)
    assert not zero.all(dim=1).any()  # no clip zeroed whole
    assert zero.any()  # some time masked
    prep = audio(features="waveform", augment={"time_masks": 1, "time_width": 10, "freq_masks": 0})
    torch.manual_seed(0)
    zero = (prep.to_batch({"x": x, "length": lengths}, train=True)["x"] == 0).squeeze(-1)
    widths = zero.sum(dim=1)
    span = 10 * prep.hop  # 10 frames of 10 ms: 800 samples at 8 kHz
    assert prep.hop == 80 and widths.max() <= span and widths.max() > span * 3 // 4
    assert abs(widths.float().mean().item() - span / 2) < span / 8  # widths drawn up to the span
    for row in zero[widths > 0]:  # each mask one contiguous run
        where = row.nonzero().squeeze(1)
        assert where[-1] - where[0] + 1 == where.numel()


def test_waveform_shift_counts_frames_of_hop_samples_and_stretch_resamples_in_time():
    prep = audio(features="waveform", augment={"time_masks": 0, "freq_masks": 0, "shift": 2})
    ramp = torch.arange(1.0, prep.n_samples + 1.0).expand(32, -1).unsqueeze(-1).contiguous()  # (B, N, 1)
    lengths = torch.full((32,), prep.n_samples)
    torch.manual_seed(0)
    out = prep.to_batch({"x": ramp, "length": lengths}, train=True)["x"][:, :, 0]
    offsets = ((out[:, 0] - 1) % prep.n_samples).long()  # where each rolled clip now starts
    rolled = torch.minimum(offsets, prep.n_samples - offsets)
    assert rolled.max() <= 2 * prep.hop and rolled.max() > 2  # up to 2 frames of 80 samples, not 2 samples
    prep = audio(features="waveform", augment={"time_masks": 0, "freq_masks": 0, "stretch": 0.2})
    torch.manual_seed(0)
    out = prep.to_batch({"x": ramp, "length": lengths}, train=True)["x"][:, :, 0]
    assert out.isfinite().all() and not torch.equal(out, ramp[:, :, 0])
    torch.testing.assert_close(out[:, 0], ramp[:, 0, 0])  # anchored at the first sample
    middle = out[:, 100]  # the ramp read at a stretched time: sample 100 of a clip slowed/sped by up to 20%
    assert ((middle > 1 + 100 / 1.2 - 1) & (middle < 1 + 100 / 0.8 + 1)).all() and middle.std() > 1


def test_frequency_augmentation_chosen_for_a_waveform_is_refused_and_the_defaults_are_skipped():
    for augment, named in (({"freq_masks": 1}, "freq_masks 1"), ({"freq_width": 3}, "freq_width 3"),
                           ({"warp": 0.1}, "warp 0.1")):
        with pytest.raises(ValueError, match=f"frequency axis.*features 'waveform'.*got {named}"):
            AudioPreprocess(features="waveform", augment=augment)
    spelled = AudioAugment().model_dump()  # every default written out, as a saved or dumped config does
    assert AudioPreprocess(features="waveform", augment=spelled).augment == AudioAugment()
    assert AudioPreprocess(features="waveform", augment={"freq_masks": 0, "freq_width": 3}).augment.freq_masks == 0
    saved = AudioPreprocess.model_validate({"features": "waveform", "augment": {"freq_masks": 1}},
                                           context={"saved_run": True})
    assert saved.augment.freq_masks == 1  # a run trained before the check still loads


def test_notes_say_a_clip_was_cut_is_silent_or_is_shorter_than_a_frame(tmp_path):
    """The runtime notes these per request; training said nothing."""
    prep = audio(max_seconds=0.5)  # 4,000 samples; frames of 256 samples (32 ms at 8 kHz)
    cut = prep.decode(write_wav(tmp_path / "long.wav", tone(440.0, 0.75, SR), SR))
    assert (cut.valid, cut.held) == (4000, 6000)
    assert prep.notes(cut) == ["longer than max_seconds (0.5 s): cut to its first 0.5 s"]
    assert audio(max_seconds=0.5, crop="center").notes(cut) == ["longer than max_seconds (0.5 s): cut to its "
                                                                 "central 0.5 s"]
    exact = prep.decode(write_wav(tmp_path / "exact.wav", tone(440.0, 0.5, SR), SR))
    assert exact.held == 4000 and prep.notes(exact) == []  # as long as the model reads: not cut
    # a sample past 0.5 s at 22,050 Hz resamples to a sample past 4,000 at 8 kHz: rounding, not a cut to note
    wave = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(11_026) / 22_050)).astype(np.float32)  # 0.50005 s
    rounded = prep.decode(write_wav(tmp_path / "rounded.wav", wave, 22_050))
    assert rounded.held > 4000 and prep.notes(rounded) == []
    silent = prep.decode(write_wav(tmp_path / "silent.wav", np.full(2000, 0.25, np.float32), 16_000))
    assert prep.notes(silent) == ["the audio is silent (one value throughout): a muted or disconnected microphone?"]
    short = prep.decode(write_wav(tmp_path / "short.wav", tone(440.0, 0.02, SR), SR))  # 160 samples
    assert prep.notes(short) == ["shorter than one frame (frame_ms 32: 256 samples): its features are mostly the zero "
                                 "padding around it"]
    assert audio(max_seconds=0.5, features="waveform").notes(short) == []  # no frames to fill
