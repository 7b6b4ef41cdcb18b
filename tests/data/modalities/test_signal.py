"""1-D signal preprocessing: file formats, channels, resampling, crop/pad, spectrogram,
standardisation, and cutting long recordings into windows."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pandas as pd
import pytest
import torch

from polymodal.config.preprocess import SignalPreprocess
from polymodal.data.modalities.signal import SignalPreprocessor, cut_windows, read_signal
from polymodal.errors import DecodeError

from ..helpers import as_tensors, encode_values, write_wav


def signal(**options) -> SignalPreprocessor:
    return SignalPreprocessor("vib", SignalPreprocess(**{"length": 256, "normalize": "none", **options}))


def recording(channels: int = 3, samples: int = 300, seed: int = 0) -> np.ndarray:
    """(channels, samples) float32: channel c is offset by 10 * c so channels are told apart."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, samples)) + 10 * np.arange(channels)[:, None]).astype(np.float32)


def save_as(path, data: np.ndarray) -> str:
    """Save a (channels, samples) array in the format named by the suffix."""
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, data.T)  # (samples, channels): more rows than columns
    elif suffix == ".npz":
        np.savez(path, other=np.zeros(3), vib=data)
    elif suffix == ".csv":
        pd.DataFrame(data.T, columns=[f"ch{c}" for c in range(len(data))]).to_csv(path, index=False)
    elif suffix == ".mat":
        from scipy.io import savemat

        savemat(path, {"data": data})
    elif suffix == ".wav":
        write_wav(path, data.T / 40, 1000)
        return str(path)
    return str(path)


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", ".mat", ".wav"])
def test_files_read_as_channels_by_samples(tmp_path, suffix):
    data = recording()
    path = save_as(tmp_path / f"r{suffix}", data)
    array = read_signal(path, key="vib" if suffix == ".npz" else None)
    assert array.dtype == np.float32 and array.shape == (3, 300)
    expected = data / 40 if suffix == ".wav" else data
    np.testing.assert_allclose(array, expected, rtol=1e-6, atol=1e-4 if suffix == ".wav" else 1e-5)


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    path = save_as(tmp_path / "r.npz", recording())
    with pytest.raises(DecodeError, match=r"several arrays .*preprocess.key"):
        read_signal(path)
    with pytest.raises(DecodeError, match="no array named 'nope'"):
        read_signal(path, key="nope")


@pytest.mark.parametrize("damage", ["not_a_zip", "truncated"])
def test_a_damaged_npz_is_a_decode_error_naming_the_file(tmp_path, damage):
    """A .npz is a ZIP archive: a file that is none, or one cut short, is a corrupt signal (which
    data.on_error skips or reads as missing), not a BadZipFile or EOFError out of numpy."""
    path = tmp_path / "r.npz"
    if damage == "not_a_zip":
        path.write_bytes(b"PK\x03\x04garbagegarbage")
    else:
        save_as(path, recording())
        path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DecodeError, match="unreadable or corrupt signal") as info:
        read_signal(str(path), key="vib")
    assert str(path) in str(info.value)


def test_one_dimensional_arrays_are_one_channel(tmp_path):
    np.save(tmp_path / "r.npy", np.arange(50, dtype=np.float64))
    array = read_signal(str(tmp_path / "r.npy"))
    assert array.shape == (1, 50) and array[0, 49] == 49


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".mat"])
def test_layout_reads_a_clip_shorter_than_its_channel_count(tmp_path, suffix):
    data = recording(channels=6, samples=4)  # (6, 4): the longer axis is the channels
    path = tmp_path / f"r{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    elif suffix == ".npz":
        np.savez(path, vib=data)
    else:
        from scipy.io import savemat

        savemat(path, {"data": data})
    assert read_signal(str(path)).shape == (4, 6)  # auto guesses time is the longer axis: wrong here
    np.testing.assert_array_equal(read_signal(str(path), layout="channels_first"), data)
    np.save(tmp_path / "t.npy", data.T)  # (4, 6) stored samples by channels
    np.testing.assert_array_equal(read_signal(str(tmp_path / "t.npy"), layout="channels_last"), data)
    x, length, _ = signal(layout="channels_first", length=8).decode(str(path))
    assert x.shape == (6, 8) and length == 4
    np.testing.assert_array_equal(x[:, :4], data)


@pytest.mark.parametrize("layout", ["auto", "channels_first", "channels_last"])
@pytest.mark.parametrize("shape", [(1, 100), (100, 1)])  # a row or a column vector: MATLAB has no 1-D arrays
def test_a_mat_vector_is_one_channel_in_any_layout(tmp_path, layout, shape):
    from scipy.io import savemat

    savemat(tmp_path / "v.mat", {"data": np.arange(100, dtype=np.float64).reshape(shape)})
    array = read_signal(str(tmp_path / "v.mat"), layout=layout)
    assert array.shape == (1, 100) and array[0, 99] == 99


def test_an_unknown_layout_is_refused():
    from polymodal.utils.signals import channels_first

    with pytest.raises(ValueError, match="layout must be auto, channels_first or channels_last; got 'rows'"):
        channels_first(np.zeros((2, 3)), "rows")
    with pytest.raises(ValueError, match="channels_first"):
        SignalPreprocess(layout="rows")


def test_cut_windows_reads_the_recordings_in_the_layout_given(tmp_path):
    data = recording(channels=6, samples=5)  # shorter than its channel count
    np.save(tmp_path / "short.npy", data)
    segments = cut_windows(pd.DataFrame({"path": [str(tmp_path / "short.npy")]}), tmp_path / "win", window=2,
                           layout="channels_first")
    assert segments["start"].tolist() == [0, 2]
    np.testing.assert_array_equal(np.load(tmp_path / "win" / segments["path"][1]), data[:, 2:4])


@pytest.mark.parametrize(("channels", "expected"), [([2, 0], [2, 0]), ([-1], [2])])
def test_channel_selection_by_index(tmp_path, channels, expected):
    data = recording()
    prep = signal(channels=channels, length=300)
    path = save_as(tmp_path / "r.npy", data)
    prep.fit([path])
    x, _, _ = prep.decode(path)
    np.testing.assert_allclose(x, data[expected], rtol=1e-6)
    assert prep.n_channels == len(expected)


def test_channel_selection_by_csv_column(tmp_path):
    data = recording()
    path = save_as(tmp_path / "r.csv", data)
    x, _, _ = signal(channels=["ch2", "ch1"], length=300).decode(path)
    np.testing.assert_allclose(x, data[[2, 1]], rtol=1e-6)
    with pytest.raises(DecodeError, match=r"\['ch9'\]"):
        signal(channels=["ch9"]).decode(path)


def test_a_headerless_csv_keeps_its_first_sample(tmp_path):
    data = recording(channels=2, samples=50)
    path = tmp_path / "r.csv"
    np.savetxt(path, data.T, delimiter=",", fmt="%.6f")
    np.testing.assert_allclose(read_signal(str(path)), data, atol=1e-5)
    with pytest.raises(DecodeError, match="the CSV has no header row"):
        signal(channels=["ch1"]).decode(str(path))
    header = tmp_path / "h.csv"
    header.write_text("time,volts\n" + "\n".join(f"{a},{b}" for a, b in data.T[:5]) + "\n")
    assert read_signal(str(header)).shape == (2, 5)  # no field is a number: the columns' names
    numbered = tmp_path / "n.csv"
    numbered.write_text("time,1\n" + "\n".join(f"{a},{b}" for a, b in data.T[:5]) + "\n")
    assert read_signal(str(numbered)).shape == (2, 5)  # a name and a channel number: a header too
    pd.DataFrame(data.T[:5]).to_csv(tmp_path / "p.csv", index=False)  # header 0,1: pandas' column numbers
    np.testing.assert_allclose(read_signal(str(tmp_path / "p.csv")), data[:, :5], rtol=1e-6)
    excel = tmp_path / "e.csv"  # Excel's "CSV UTF-8": a byte-order mark, and a first sample with a blank
    excel.write_bytes(b"\xef\xbb\xbf1.5,\n2.5,3.5\n")
    assert read_signal(str(excel)).shape == (2, 2)
    (tmp_path / "z.csv").write_text("0.0,1.0\n2.0,3.0\n")  # numbers that are not integers: a sample
    np.testing.assert_array_equal(read_signal(str(tmp_path / "z.csv")), [[0, 2], [1, 3]])


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".wav"])
def test_channel_names_outside_a_csv_are_refused_not_ignored(tmp_path, suffix):
    path = save_as(tmp_path / f"r{suffix}", recording() / 10)
    with pytest.raises(DecodeError, match=r"channels names columns \['ch1'\], which only a .csv file has"):
        signal(channels=["ch1"]).decode(path)


@pytest.mark.parametrize(("array", "fragment"), [(np.array(["a", "b", "c"]), "expected numeric samples"),
                                                 (np.zeros((2, 0), np.float32), "holds no samples"),
                                                 (np.float32(3.0), r"expected a 1-D or 2-D array; got shape \(\)"),
                                                 (np.zeros((2, 3, 4), np.float32), "expected a 1-D or 2-D array")])
def test_text_or_empty_arrays_are_decode_errors(tmp_path, array, fragment):
    np.save(tmp_path / "r.npy", array)
    with pytest.raises(DecodeError, match=fragment):
        signal().decode(str(tmp_path / "r.npy"))


def test_channel_index_out_of_range(tmp_path):
    with pytest.raises(DecodeError, match=r"channels \[5\] .* out of range"):
        signal(channels=[5]).decode(save_as(tmp_path / "r.npy", recording()))


def test_resampling_changes_the_number_of_samples(tmp_path):
    rate, seconds, freq = 1000, 1.0, 20.0
    t = np.arange(int(rate * seconds)) / rate
    np.save(tmp_path / "s.npy", np.sin(2 * np.pi * freq * t).astype(np.float32))
    x, valid, _ = signal(sample_rate=rate, resample_to=250, length=400).decode(str(tmp_path / "s.npy"))
    assert valid == 250 and x.shape == (1, 400)
    t_new = np.arange(250) / 250
    np.testing.assert_allclose(x[0, 20:230], np.sin(2 * np.pi * freq * t_new)[20:230], atol=0.02)
    assert not x[0, 250:].any()


@pytest.mark.parametrize(("crop", "start"), [("start", 0), ("center", 22)])
def test_crop_and_pad(tmp_path, crop, start):
    data = recording(samples=300)
    path = save_as(tmp_path / "r.npy", data)
    x, valid, _ = signal(length=256, crop=crop).decode(path)
    assert valid == 256
    np.testing.assert_allclose(x, data[:, start:start + 256], rtol=1e-6)
    padded, valid, _ = signal(length=400).decode(path)
    assert valid == 300 and padded.shape == (3, 400) and not padded[:, 300:].any()


@pytest.mark.parametrize(("scale", "log"), [("log1p", np.log1p), ("db", lambda p: 10 * np.log10(p + 1e-10))])
@pytest.mark.parametrize(("n_fft", "frames"), [(32, 17), (33, 16)])  # odd: 1 + 255 // 16 frames, the STFT's count
def test_spectrogram_shape_and_values(tmp_path, scale, log, n_fft, frames):
    data = recording(channels=2, samples=256)
    prep = signal(length=256, spectrogram={"n_fft": n_fft, "hop": 16, "scale": scale})
    path = save_as(tmp_path / "r.npy", data)
    prep.fit([path])
    arrays = encode_values(prep, [path])
    bins = n_fft // 2 + 1
    assert prep.shape == (2 * bins, frames)
    assert arrays["x"].shape == (1, *prep.shape) and arrays["x"].dtype == np.float32
    for c in range(2):
        power = np.abs(librosa.stft(data[c].astype(np.float64), n_fft=n_fft, hop_length=16, window="hann", center=True,
                                    pad_mode="constant")) ** 2
        np.testing.assert_allclose(arrays["x"][0, c * bins:(c + 1) * bins], log(power), rtol=1e-4, atol=1e-4)


def test_db_spectrogram_stays_a_log_at_any_amplitude_and_silence_reads_the_floor(tmp_path):
    """A signal 1,000 times weaker reads 60 dB lower in every bin well above the floor; an all-zero
    channel reads -100 dB throughout. log1p, on a signal of power well below 1, is about linear:
    the weak signal reads about a millionth of the strong one, next to silence's 0."""
    data = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32) * 0.1  # power per bin below 1
    paths = [save_as(tmp_path / f"{name}.npy", np.concatenate([x, x])) for name, x in
             (("live", data), ("weak", data * 1e-3), ("dead", np.zeros_like(data)))]
    db = signal(spectrogram={"n_fft": 32, "hop": 16, "scale": "db"})
    db.fit(paths[:1])
    live, weak, dead = encode_values(db, paths)["x"]
    loud = live > -20  # well above the floor: weak reads -80 dB there at the least, the floor adds < 0.05 dB
    assert loud.mean() > 0.5
    np.testing.assert_allclose(weak[loud], live[loud] - 60, atol=0.05)
    np.testing.assert_array_equal(dead, np.full_like(dead, -100.0))
    log1p = signal(spectrogram={"n_fft": 32, "hop": 16, "scale": "log1p"})
    log1p.fit(paths[:1])
    live, weak, dead = encode_values(log1p, paths)["x"]
    assert np.abs(weak).max() < 1e-5 and not dead.any()


def test_global_standardisation_uses_training_statistics_per_channel(tmp_path):
    prep = signal(length=256, normalize="global")
    train = [save_as(tmp_path / f"t{i}.npy", recording(samples=200 + 50 * i, seed=i)) for i in range(3)]
    prep.fit(train)
    arrays = encode_values(prep, train)
    prep.fit_features(arrays)
    valid = np.concatenate([x[:, :n] for x, n in zip(arrays["x"], arrays["length"])], axis=1)  # padding excluded
    np.testing.assert_allclose(prep.mean, valid.mean(axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(prep.std, valid.std(axis=1), rtol=1e-5)
    new = encode_values(prep, [save_as(tmp_path / "new.npy", recording(seed=7))])
    out = prep.to_batch(as_tensors(new), train=False)["x"]
    expected = (new["x"] - prep.mean[None, :, None]) / prep.std[None, :, None]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_sample_standardisation_and_mask(tmp_path):
    prep = signal(length=256, normalize="sample")
    path = save_as(tmp_path / "short.npy", recording(samples=100))
    prep.fit([path])
    batch = prep.to_batch(as_tensors(encode_values(prep, [path])), train=False)
    x, mask = batch["x"][0].double(), batch["mask"][0]
    assert mask.sum() == 100 and mask[:100].all()
    torch.testing.assert_close(x[:, :100].mean(dim=1), torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(x[:, :100].std(dim=1, unbiased=False), torch.ones(3, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    assert not x[:, 100:].any()


def test_a_different_channel_count_than_in_training_is_a_decode_error(tmp_path):
    prep = signal()
    prep.fit([save_as(tmp_path / "two.npy", recording(channels=2))])
    bad = save_as(tmp_path / "three.npy", recording(channels=3))
    with pytest.raises(DecodeError, match="expected 2 channel") as info:
        prep.decode(bad)
    assert info.value.path == bad


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("r.npy", b"garbage", "not a readable .npy array"),
        ("r.txt", b"1,2,3", "unsupported signal file type '.txt'"),
    ],
)
def test_unreadable_signal_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=fragment) as info:
        signal().decode(str(path))
    assert str(path) in str(info.value)


def test_non_finite_values_are_a_decode_error_naming_the_first(tmp_path):
    data = recording()
    data[2, 7] = np.inf
    data[1, 5] = np.nan
    data[0, 9] = np.nan
    with pytest.raises(DecodeError, match=r"3 NaN or infinite value\(s\), the first \(nan\) at channel 1, sample 5;"):
        signal().decode(save_as(tmp_path / "r.npy", data))


def test_a_non_finite_csv_value_is_named_with_its_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("a,b\n1.0,2.0\n\n3.0,inf\n4.0,5.0\n")  # a blank line, which pandas skips
    with pytest.raises(DecodeError, match=r"the first \(inf\) at channel 1, sample 1 \(CSV line 4\)"):
        signal().decode(str(path))


def test_a_first_csv_row_that_mixes_numbers_and_text_is_a_sample_with_a_bad_value(tmp_path):
    """Only a first row with no number in it names the columns: ``0.1260,n/a`` is the first sample
    (its missing value refused), not a header that drops it; ``0.5,abc`` is a sample with a cell
    that is not a number, refused with its line and column."""
    rows = "\n".join(f"{0.1 * i:.2f},{0.2 * i:.2f}" for i in range(1, 6)) + "\n"
    missing = tmp_path / "missing.csv"
    missing.write_text("0.1260,n/a\n" + rows)
    with pytest.raises(DecodeError, match=r"channel 1, sample 0 \(CSV line 1\)"):
        signal().decode(str(missing))
    text = tmp_path / "text.csv"
    text.write_text("0.5,abc\n" + rows)
    with pytest.raises(DecodeError, match=r"CSV line 1, column 1 \(counting from 0\) holds 'abc'; signal samples must"):
        read_signal(str(text))
    later = tmp_path / "later.csv"
    later.write_text("x,y\n" + rows + "0.7,oops\n")
    with pytest.raises(DecodeError, match=r"CSV line 7, column 'y' holds 'oops'") as info:
        signal().decode(str(later))
    assert str(later) in str(info.value)


# --- cut_windows ---------------------------------------------------------------------------------
def test_cut_windows_writes_overlapping_windows_and_a_manifest(tmp_path):
    data = recording(channels=2, samples=1000)
    path = save_as(tmp_path / "long.npy", data)
    recordings = pd.DataFrame({"path": [path], "label": ["inner"]})
    segments = cut_windows(recordings, tmp_path / "win", window=100, hop=50)
    assert len(segments) == (1000 - 100) // 50 + 1
    assert set(segments.columns) == {"label", "recording", "start", "path"}
    assert segments["start"].tolist() == list(range(0, 901, 50))
    assert (segments["label"] == "inner").all() and (segments["recording"] == "long").all()
    for row in segments.itertuples():
        window = np.load(tmp_path / "win" / row.path)
        np.testing.assert_array_equal(window, data[:, row.start:row.start + 100])


def test_cut_windows_several_keys_and_a_cap(tmp_path):
    de, fe = np.arange(1000, dtype=np.float32), -np.arange(1000, dtype=np.float32)
    np.savez(tmp_path / "rec.npz", de=de, fe=fe)
    recordings = pd.DataFrame({"path": [str(tmp_path / "rec.npz")], "fault": ["B007"]})
    segments = cut_windows(recordings, tmp_path / "out", window=200, keys=["de", "fe"], max_windows=3)
    assert segments["start"].tolist() == [0, 400, 800]  # 5 windows, 3 kept evenly spaced
    assert {"de_path", "fe_path"} <= set(segments.columns)
    for row in segments.itertuples():
        np.testing.assert_array_equal(np.load(tmp_path / "out" / row.de_path)[0], de[row.start:row.start + 200])
        np.testing.assert_array_equal(np.load(tmp_path / "out" / row.fe_path)[0], fe[row.start:row.start + 200])


def test_spectrogram_length_counts_the_frames_of_the_valid_samples(tmp_path):
    path = save_as(tmp_path / "short.npy", recording(channels=2, samples=100))
    prep = signal(length=256, spectrogram={"n_fft": 32, "hop": 16})
    prep.fit([path])
    arrays = encode_values(prep, [path])
    frames = librosa.stft(np.zeros(100, np.float32), n_fft=32, hop_length=16, center=True).shape[1]  # 7
    assert arrays["length"].tolist() == [frames]
    batch = prep.to_batch(as_tensors(arrays), train=False)
    assert int(batch["mask"][0].sum()) == frames and batch["mask"][0, :frames].all()


def test_cut_windows_names_its_own_key_argument_when_a_file_holds_several_arrays(tmp_path):
    np.savez(tmp_path / "rec.npz", de=np.zeros(100), fe=np.zeros(100))
    with pytest.raises(DecodeError, match=r"choose one with key= \(or keys=\)"):
        cut_windows(pd.DataFrame({"path": [str(tmp_path / "rec.npz")]}), tmp_path / "out", window=10)


# --- the default length ----------------------------------------------------------------------------
@pytest.mark.parametrize(("samples", "done"), [(2048, "cropped to their first 1,024 samples"),
                                               (600, "zero-padded")])
def test_a_default_length_that_crops_or_pads_the_training_files_is_warned_about(tmp_path, samples, done):
    path = save_as(tmp_path / "w.npy", recording(channels=2, samples=samples))
    with pytest.warns(UserWarning, match=f"preprocess.length is not set.*holds {samples:,} samples.*{done}"):
        SignalPreprocessor("vib", SignalPreprocess()).fit([path])


def test_the_default_length_is_judged_after_resampling_and_a_chosen_length_is_not_questioned(tmp_path):
    path = save_as(tmp_path / "w.npy", recording(channels=1, samples=2048))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SignalPreprocessor("vib", SignalPreprocess(sample_rate=2000, resample_to=1000)).fit([path])  # 1,024 samples
        SignalPreprocessor("vib", SignalPreprocess(length=512)).fit([path])  # set: cropping was asked for


# --- training augmentation -------------------------------------------------------------------------
def test_augmentation_perturbs_training_batches_only_and_keeps_padding_zero(tmp_path):
    path = save_as(tmp_path / "short.npy", recording(samples=100))
    plain = signal(length=128, normalize="sample")
    augmented = signal(length=128, normalize="sample", augment={"gain": 0.5, "noise": 0.0})
    for prep in (plain, augmented):
        prep.fit([path])
    arrays = as_tensors(encode_values(plain, [path] * 8))
    torch.manual_seed(0)
    x = augmented.to_batch(arrays, train=True)["x"]
    clean = plain.to_batch(arrays, train=False)["x"]
    torch.testing.assert_close(augmented.to_batch(arrays, train=False)["x"], clean)  # evaluation: untouched
    ratio = x[:, :, :100] / clean[:, :, :100]  # gain only: one factor per sample and channel, within the range
    torch.testing.assert_close(ratio, ratio[:, :, :1].expand_as(ratio), atol=1e-4, rtol=1e-4)
    assert ratio.min() >= 0.5 - 1e-5 and ratio.max() <= 1.5 + 1e-5 and ratio[:, :, 0].std() > 0.05
    assert not x[:, :, 100:].any()  # padding stays padding
    noisy = signal(length=128, normalize="sample", augment={"gain": 0.0, "noise": 0.3, "shift": 5, "erase": 0.2})
    noisy.fit([path])
    out = noisy.to_batch(arrays, train=True)["x"]
    assert 0.2 < float((out[:, :, :100] - clean[:, :, :100]).std()) and not out[:, :, 100:].any()


def test_augmentation_settings_do_not_change_what_is_cached(tmp_path):
    """Applied to batches after the cache: another augmentation reuses the cached windows."""
    path = save_as(tmp_path / "r.npy", recording())
    preps = [signal(), signal(augment={"noise": 0.5, "shift": 3}), signal(length=512)]
    for prep in preps:
        prep.fit([path])
    assert preps[0].fingerprint() == preps[1].fingerprint() != preps[2].fingerprint()
