"""``read_sound`` and ``read_pcm_wav(mono=False)`` (``polymodal.utils.wav``), which signal modalities
read audio-format files with in training and in the runtime: every channel kept, libsndfile's
samples, and corrupt or truncated files refused as DecodeError."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from polymodal.errors import DecodeError
from polymodal.utils.wav import read_pcm_wav, read_sound

RATE = 8000


def encoded(frames: int = 500, channels: int = 3, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    soundfile.write(buffer, rng.uniform(-0.9, 0.9, (frames, channels)), RATE, subtype=subtype, format=fmt)
    return buffer.getvalue()


def test_pcm_wav_keeps_every_channel_with_libsndfiles_values():
    data = encoded()
    samples, rate = read_pcm_wav(io.BytesIO(data), mono=False)
    want = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].T
    assert rate == RATE and samples.shape == (3, 500) and samples.dtype == np.float32 and samples.flags.c_contiguous
    np.testing.assert_array_equal(samples, want)
    mono, _ = read_pcm_wav(io.BytesIO(data))  # the default, as audio modalities read it, is unchanged
    np.testing.assert_allclose(mono, want.mean(axis=0), atol=1e-7)


@pytest.mark.parametrize(("subtype", "fmt"), [("PCM_16", "WAV"), ("PCM_24", "WAV"), ("FLOAT", "WAV"),
                                              ("PCM_16", "FLAC"), ("VORBIS", "OGG")])
@pytest.mark.parametrize("as_path", [True, False])
def test_read_sound_gives_libsndfiles_samples_for_every_format(tmp_path, subtype, fmt, as_path):
    data = encoded(subtype=subtype, fmt=fmt)
    path = tmp_path / f"a.{fmt.lower()}"
    path.write_bytes(data)
    samples, rate = read_sound(str(path) if as_path else io.BytesIO(data), mono=False)
    assert rate == RATE and samples.shape[0] == 3
    np.testing.assert_array_equal(samples, soundfile.read(str(path), dtype="float32", always_2d=True)[0].T)


@pytest.mark.parametrize(("content", "reason"), [
    (b"RIFFxxxxWAVEjunk", r"unreadable or corrupt audio \(.*data"),  # libsndfile: no 'data' chunk
    (encoded()[:44], "truncated WAV: header declares 500 frames, the file holds 0"),
    (encoded(subtype="PCM_24")[:-3 * 3 * 100], "truncated WAV: header declares 500 frames, the file holds 400"),
    (b"not audio at all", r"unreadable or corrupt audio \("),
])
def test_corrupt_or_truncated_files_are_decode_errors_naming_the_path_they_were_read_from(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(DecodeError, match=reason) as info:
        read_sound(str(path), mono=False)
    assert info.value.path == str(path) and "Error opening" not in info.value.reason
    with pytest.raises(DecodeError, match=reason) as info:
        read_sound(io.BytesIO(content))
    assert info.value.path is None and "BytesIO" not in info.value.reason


def test_a_file_that_cannot_be_opened_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_sound(str(tmp_path / "nope.wav"))


@pytest.mark.parametrize("max_seconds", [None, 0.05])
def test_a_wav_libsndfile_cannot_seek_in_is_read(tmp_path, max_seconds):
    """GSM 6.10 (and G.721) WAV: libsndfile reads it only a given count of frames, so reading all
    (frames=-1) raised a bare ValueError: a 500 from the service, a crash whatever on_error."""
    data = encoded(frames=800, channels=1, subtype="GSM610")
    want = soundfile.read(io.BytesIO(data), frames=1280, dtype="float32")[0]
    (tmp_path / "gsm.wav").write_bytes(data)
    for source in (io.BytesIO(data), str(tmp_path / "gsm.wav")):
        samples, rate = read_sound(source, max_seconds=max_seconds)
        limit = len(want) if max_seconds is None else int(max_seconds * RATE) + 1
        assert rate == RATE and samples.shape == (limit,)
        np.testing.assert_array_equal(samples, want[:limit])


def test_the_runtime_reads_a_gsm_wav_and_names_an_unreadable_one():
    from polymodal.deploy.errors import RequestError
    from polymodal.deploy.features.audio import read_wav

    assert read_wav(encoded(frames=800, channels=1, subtype="GSM610"))[0].shape == (1280,)
    with pytest.raises(RequestError, match=r"not a readable audio file \(WAV, FLAC, OGG\)") as err:
        read_wav(b"RIFF\x24\0\0\0WAVEjunk")
    assert err.value.status == 415
