"""Signals read from audio-format files (WAV, FLAC) in training: every channel kept, the samples
libsndfile reads; a corrupt, truncated or empty file an unreadable file (``data.on_error`` applies);
a file at another rate than the modality reads refused. Also the length note of eager encoding,
``;``-separated CSV files and ``cut_windows``' refusals."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from polymodal.config.preprocess import SignalPreprocess
from polymodal.data.encode import encode_modality
from polymodal.data.manifest import Manifest
from polymodal.data.modalities.signal import SignalPreprocessor, cut_windows, read_signal
from polymodal.errors import DecodeError


def signal(**options) -> SignalPreprocessor:
    return SignalPreprocessor("vib", SignalPreprocess(**{"length": 256, "normalize": "none", **options}))


def stereo(frames: int = 300, seed: int = 0) -> np.ndarray:
    """(frames, 2) float64 in [-0.5, 0.5]: two channels told apart (the second is the first's negative
    plus an offset), so a mix-down or a swap shows."""
    wave = np.random.default_rng(seed).uniform(-0.3, 0.3, frames)
    return np.stack([wave, 0.2 - wave], axis=1)


def write(path: Path, frames: int = 300, rate: int = 12_000, subtype: str = "PCM_16") -> str:
    soundfile.write(path, stereo(frames), rate, subtype=subtype)
    return str(path)


def header_44(frames: int = 1000) -> bytes:
    """The 44-byte header of a 2-channel 16-bit WAV that declares ``frames`` frames, without them."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros((frames, 2)), 8000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()[:44]


CORRUPT = {
    "junk": (b"RIFFxxxxWAVEjunk", "unreadable or corrupt audio"),
    "no data chunk": (header_44()[:36] + b"LIST\x00\x00\x00\x00", "unreadable or corrupt audio"),
    "header alone": (header_44(), "truncated WAV: header declares 1000 frames, the file holds 0"),
    "no frames": (header_44(0), "the signal holds no samples"),
}


# --- reading ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "subtype"), [(".wav", "PCM_16"), (".wav", "PCM_24"), (".wav", "FLOAT"),
                                                 (".flac", "PCM_16")])
def test_an_audio_file_reads_as_its_channels_with_libsndfiles_samples(tmp_path, suffix, subtype):
    path = write(tmp_path / f"a{suffix}", subtype=subtype)
    got = read_signal(path)
    want = soundfile.read(path, dtype="float32", always_2d=True)[0].T
    assert got.shape == (2, 300) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert not np.allclose(got[0], got[1])  # not mixed down


@pytest.mark.parametrize("case", list(CORRUPT))
def test_a_corrupt_truncated_or_empty_wav_is_a_decode_error_naming_the_file(tmp_path, case):
    content, reason = CORRUPT[case]
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason) as info:
        read_signal(str(path))
    assert info.value.path == str(path)


def test_a_truncated_wav_of_another_encoding_is_refused_as_the_audio_modality_refuses_it(tmp_path):
    """libsndfile reads a 24-bit WAV cut short as a shorter clip; its header declares more frames."""
    path = write(tmp_path / "a.wav", frames=1000, subtype="PCM_24")
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:len(data) - 3 * 2 * 400])  # 400 frames of 3 bytes x 2 channels cut off
    with pytest.raises(DecodeError, match="truncated WAV: header declares 1000 frames, the file holds 600"):
        signal().decode(path)


@pytest.mark.parametrize("on_error", ["skip", "missing"])
def test_encoding_skips_a_corrupt_wav_under_on_error(tmp_path, on_error):
    """A raw soundfile.LibsndfileError stopped train and predict whatever data.on_error said."""
    good = write(tmp_path / "good.wav")
    cells = [good]
    for i, case in enumerate(CORRUPT):
        (tmp_path / f"bad{i}.wav").write_bytes(CORRUPT[case][0])
        cells.append(str(tmp_path / f"bad{i}.wav"))
    prep = signal()
    prep.fit([good])
    manifest = Manifest(pd.DataFrame({"vib": cells}), tmp_path, "rows.csv", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the length note
        encoded, skipped = encode_modality(prep, cells, manifest, on_error=on_error)
    assert encoded.present.tolist() == [True] + [False] * len(CORRUPT)
    assert [s.row for s in skipped] == list(range(1, len(CORRUPT) + 1))
    assert [s.path for s in skipped] == cells[1:]


# --- the sample rate ----------------------------------------------------------------------------------
def test_the_rate_of_the_first_training_file_is_recorded_and_another_rate_refused(tmp_path):
    trained = write(tmp_path / "train.wav", rate=12_000)
    faster = write(tmp_path / "copy48k.wav", rate=48_000)
    prep = signal()
    prep.fit([trained])
    assert prep.get_state()["file_rate"] == 12_000 and prep.encoding_state()["file_rate"] == 12_000
    assert prep.decode(trained)[1] == 256
    with pytest.raises(DecodeError) as info:
        prep.decode(faster)
    assert info.value.reason == ("the file's header declares 48,000 Hz; this modality reads signals at 12,000 Hz "
                                 "(the rate of its training files): resample the file to 12,000 Hz")
    assert info.value.path == faster
    restored = signal()  # as a saved run is loaded
    restored.set_state(prep.get_state())
    with pytest.raises(DecodeError, match="declares 48,000 Hz"):
        restored.decode(faster)


def test_preprocess_sample_rate_is_the_rate_read_when_set(tmp_path):
    path = write(tmp_path / "a.wav", rate=48_000)
    prep = signal(sample_rate=12_000)
    prep.fit([path])
    with pytest.raises(DecodeError, match=r"declares 48,000 Hz; this modality reads signals at 12,000 Hz "
                                          r"\(preprocess.sample_rate\): resample the file to 12,000 Hz"):
        prep.decode(path)


def test_a_run_saved_before_the_rate_was_recorded_and_files_without_a_rate_are_not_checked(tmp_path):
    trained = write(tmp_path / "train.wav", rate=12_000)
    prep = signal()
    prep.fit([trained])
    for old in (signal(), signal(sample_rate=12_000)):  # runs saved before file_rate: they read every file
        old.set_state({"n_channels": 2})                 # as if at sample_rate, and still read them so
        assert old.decode(write(tmp_path / "b.wav", rate=48_000))[1] == 256
    np.save(tmp_path / "a.npy", stereo())
    (tmp_path / "a.csv").write_text("x,y\n" + "".join(f"{a},{b}\n" for a, b in stereo()))
    for path in (tmp_path / "a.npy", tmp_path / "a.csv"):  # no header rate: nothing to compare
        assert prep.decode(str(path))[1] == 256
    npy = signal()
    npy.fit([str(tmp_path / "a.npy")])
    assert npy.get_state()["file_rate"] is None and "file_rate" not in npy.encoding_state()
    restored = signal(sample_rate=12_000)  # a run of .npy files, saved with the record: files are checked
    restored.set_state(npy.get_state())
    with pytest.raises(DecodeError, match="declares 48,000 Hz"):
        restored.decode(write(tmp_path / "c.wav", rate=48_000))


def test_the_rate_is_part_of_the_fingerprint(tmp_path):
    slow, fast = signal(), signal()
    slow.fit([write(tmp_path / "a.wav", rate=12_000)])
    fast.fit([write(tmp_path / "b.wav", rate=48_000)])
    assert slow.fingerprint() != fast.fingerprint()


# --- eager notes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("frames", "crop", "note"), [
    (100, "start", "fewer samples than the 256 the model reads: zero-padded to 256"),
    (300, "start", "more samples than the 256 the model reads: cropped to its first 256"),
    (300, "center", "more samples than the 256 the model reads: cropped to its central 256"),
    (256, "start", None),
])
def test_encoding_notes_a_signal_cut_or_padded_to_its_length(tmp_path, frames, crop, note):
    path = str(tmp_path / "a.npy")
    np.save(path, stereo(frames))
    prep = signal(crop=crop)
    prep.fit([path])
    assert prep.notes(prep.decode(path)) == ([] if note is None else [note])
    manifest = Manifest(pd.DataFrame({"vib": [path]}), tmp_path, "new.csv", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encode_modality(prep, [path], manifest)
    said = [str(w.message) for w in caught]
    if note is None:
        assert said == []
    else:
        assert said == [f"new.csv: signal modality 'vib', 1 row(s): {note} (row 0 (line 2))"]


# --- CSV separators ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_csv_separated_by_semicolons_or_tabs_is_read(tmp_path, sep):
    path = tmp_path / "eu.csv"
    path.write_text(f"t{sep}accel\n0.0{sep}-0.13\n0.001{sep}0.25\n")
    np.testing.assert_array_equal(read_signal(str(path)), np.array([[0.0, 0.001], [-0.13, 0.25]], np.float32))
    prep = signal(channels=["accel"])
    prep.fit([str(path)])
    assert prep.decode(str(path))[0][:, :2].tolist() == [[np.float32(-0.13), np.float32(0.25)]]


def test_a_decimal_comma_in_a_semicolon_csv_is_named(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text("t;accel\n0,0;-0,13\n")
    with pytest.raises(DecodeError, match="column 't' holds '0,0'; signal samples must be numbers .*seems to write "
                                          "',' as the decimal mark"):
        read_signal(str(path))


# --- cut_windows -----------------------------------------------------------------------------------------
def test_cut_windows_names_path_column_and_the_columns_it_has(tmp_path):
    with pytest.raises(ValueError, match=r"path_column='path' names no column of the recordings; they have \['file'\]"):
        cut_windows(pd.DataFrame({"file": [str(tmp_path / "a.npy")]}), tmp_path / "out", window=10)


def test_cut_windows_warns_about_a_recording_shorter_than_a_window(tmp_path):
    np.save(tmp_path / "long.npy", np.zeros((2, 100), np.float32))
    np.save(tmp_path / "short.npy", np.zeros((2, 30), np.float32))
    recordings = pd.DataFrame({"path": [str(tmp_path / "long.npy"), str(tmp_path / "short.npy")]})
    with pytest.warns(UserWarning, match=r"1 of 2 recording\(s\) are shorter than window=50 samples and give no "
                                         r"window: .*short.npy \(30 samples\)"):
        segments = cut_windows(recordings, tmp_path / "out", window=50)
    assert segments["recording"].tolist() == ["long", "long"]


def test_cut_windows_refuses_when_no_recording_is_a_window_long(tmp_path):
    np.save(tmp_path / "short.npy", np.zeros((2, 30), np.float32))
    with pytest.raises(ValueError, match=r"no recording is as long as window=50 samples.*short.npy \(30 samples\)"):
        cut_windows(pd.DataFrame({"path": [str(tmp_path / "short.npy")]}), tmp_path / "out", window=50)


def test_an_ogg_signal_is_read_with_every_channel_as_the_runtime_reads_it(tmp_path):
    """The runtime read OGG signals while training refused '.ogg' as an unsupported type."""
    path = tmp_path / "a.ogg"
    soundfile.write(path, stereo(), 12_000, format="OGG", subtype="VORBIS")
    prep = signal()
    prep.fit([str(path)])
    window, valid, held = prep.decode(str(path))
    assert window.shape == (2, 256) and prep.file_rate == 12_000 and held == 300
    want = soundfile.read(path, dtype="float32", always_2d=True)[0].T
    np.testing.assert_array_equal(window[:, :valid], want[:, :256])
