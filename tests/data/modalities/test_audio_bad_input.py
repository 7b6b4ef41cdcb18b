"""Audio files that are not what they claim: truncated WAVs (both decoders) and ``.npy`` arrays that
are not numeric 1-D/2-D samples; each is a DecodeError naming the file, and ``on_error: skip``
lists the file like any other corrupt one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile

from polymodal.data.manifest import read_manifest
from polymodal.data.modalities.audio import read_audio
from polymodal.data.pipeline import DataPipeline
from polymodal.errors import DecodeError

from ..helpers import make_config, tone, write_wav

SR = 8000


def truncate(path: str, keep: float) -> str:
    """Cut a file to ``keep`` of its bytes, leaving its header's sizes as they were."""
    data = open(path, "rb").read()
    with open(path, "wb") as handle:
        handle.write(data[:int(len(data) * keep)])
    return path


@pytest.mark.parametrize(("subtype", "holds"), [("PCM_16", 2652), ("FLOAT", 2653), ("PCM_24", 2656)])
def test_a_truncated_wav_is_refused_by_either_decoder(tmp_path, subtype, holds):
    """PCM_16 takes the standard-library path, FLOAT and PCM_24 libsndfile's, which by itself
    would clip the frame count to what the file holds."""
    path = truncate(write_wav(tmp_path / "clip.wav", tone(440, 1.0, SR), SR, subtype=subtype), 1 / 3)
    assert soundfile.info(path).frames == holds  # libsndfile hides the truncation
    with pytest.raises(DecodeError, match=f"truncated WAV: header declares 8000 frames, the file holds {holds}$") \
            as info:
        read_audio(path)
    assert info.value.path == path


def test_an_mp3_whose_length_libsndfile_estimates_still_reads(tmp_path):
    """Without a Xing/Info header an MP3's frame count is estimated from its size and bit rate,
    and may exceed what decoding gives: that is not truncation."""
    av = pytest.importorskip("av")
    path = str(tmp_path / "clip.mp3")
    with av.open(path, "w", format="mp3", options={"write_xing": "0"}) as out:
        stream = out.add_stream("libmp3lame" if "libmp3lame" in av.codecs_available else "mp3", rate=16000,
                                layout="mono")
        stream.bit_rate = 32000
        frame = av.AudioFrame.from_ndarray(tone(440, 3.0, 16000)[None, :].astype(np.float32), format="flt",
                                           layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with soundfile.SoundFile(path) as handle:
        assert handle.format == "MP3" and handle.frames > len(handle.read())  # the estimate overshoots
    wave, rate = read_audio(path)
    assert rate == 16000 and 2.9 * rate < len(wave) <= 3.1 * rate


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_whole_wav_with_a_chunk_after_its_data_still_reads(tmp_path, subtype):
    """Only a short data chunk is truncation: a complete file reads every frame."""
    wave = tone(440, 0.25, SR)
    path = write_wav(tmp_path / "clip.wav", wave, SR, subtype=subtype)
    samples, rate = read_audio(path)
    assert rate == SR and len(samples) == len(wave)


@pytest.mark.parametrize("placeholder", [0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
def test_a_streamed_wav_with_a_placeholder_size_reads_its_whole_frames(tmp_path, subtype, placeholder):
    """Writers that stream to a pipe cannot go back to fill in the data size; such a file is
    whole, not truncated."""
    wave = tone(440, 0.25, SR)
    path = write_wav(tmp_path / "clip.wav", wave, SR, subtype=subtype)
    data = bytearray(open(path, "rb").read())
    at = data.index(b"data") + 4
    data[at:at + 4] = placeholder.to_bytes(4, "little")
    data[4:8] = min(placeholder, 0xFFFFFFFF).to_bytes(4, "little")  # the RIFF size too, as the writer left it
    open(path, "wb").write(bytes(data))
    samples, rate = read_audio(path)
    assert rate == SR and len(samples) == len(wave)


def test_a_truncated_wav_is_skipped_and_listed(tmp_path):
    paths = [write_wav(tmp_path / f"{i}.wav", tone(200 + 50 * i, 0.2, SR, seed=i), SR, subtype="PCM_16")
             for i in range(4)]
    truncate(paths[2], 0.5)
    config = make_config({"voice": {"kind": "audio", "column": "audio", "preprocess": {"sample_rate": SR}}},
                         data={"on_error": "skip"})
    manifest = read_manifest(pd.DataFrame({"audio": paths, "y": [0, 1, 0, 1]}))
    table, _ = DataPipeline(config).fit(manifest)
    assert table.rows.tolist() == [0, 1, 3]
    assert [(s.modality, s.row, s.path) for s in table.skipped] == [("voice", 2, paths[2])]
    assert "truncated WAV: header declares 1600 frames, the file holds" in table.skipped[0].reason


def save(tmp_path, array: np.ndarray) -> str:
    path = str(tmp_path / "clip.npy")
    np.save(path, array)
    return path


def test_a_string_npy_is_a_decode_error_naming_the_file(tmp_path):
    path = save(tmp_path, np.array(["a", "b", "c"]))
    with pytest.raises(DecodeError, match=r"expected a numeric \(integer or float\) array of audio samples, got "
                                          r"dtype <U1") as info:
        read_audio(path)
    assert info.value.path == path


@pytest.mark.parametrize("shape", [(2, 2, 2, 2, 2), (4, 3, 2), ()])
def test_an_npy_that_is_not_1d_or_2d_is_refused(tmp_path, shape):
    path = save(tmp_path, np.ones(shape, np.float32))
    with pytest.raises(DecodeError, match=r"expected 1-D samples or a 2-D \(samples, channels\) array, got shape "
                                          + r"\(" + ", ".join(map(str, shape))):
        read_audio(path)


@pytest.mark.parametrize("shape", [(0,), (0, 2)])
def test_an_npy_without_samples_is_refused_like_an_empty_wav(tmp_path, shape):
    empty_wav = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    with pytest.raises(DecodeError) as wav_error:
        read_audio(empty_wav)
    with pytest.raises(DecodeError) as npy_error:
        read_audio(save(tmp_path, np.zeros(shape, np.float32)))
    assert npy_error.value.reason == wav_error.value.reason == "audio file holds no samples"


def test_numeric_npy_clips_still_read(tmp_path):
    stereo = np.stack([np.arange(6), np.arange(6) + 2], axis=1).astype(np.float32)  # (samples, channels)
    samples, rate = read_audio(save(tmp_path, stereo))
    assert rate == 0
    np.testing.assert_array_equal(samples, np.arange(6, dtype=np.float32) + 1)


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_U8", "PCM_32"])
def test_integer_npy_samples_read_as_the_same_pcm_in_a_wav_file(tmp_path, subtype):
    """A model trained on int16 arrays and served WAV uploads sees one scale."""
    wave = tone(440, 0.05, SR) * 0.8
    wav = write_wav(tmp_path / "clip.wav", wave, SR, subtype=subtype)
    dtype = {"PCM_16": "int16", "PCM_U8": "uint8", "PCM_32": "int32"}[subtype]
    pcm = soundfile.read(wav, dtype={"PCM_U8": "int16"}.get(subtype, dtype))[0]
    if subtype == "PCM_U8":  # soundfile gives 8-bit as int16 << 8; stored unsigned: + 128
        pcm = (pcm // 256 + 128).astype(np.uint8)
    from_wav, _ = read_audio(wav)
    from_npy, _ = read_audio(save(tmp_path, np.stack([pcm, pcm], axis=1).astype(dtype)))  # stereo, same both sides
    np.testing.assert_allclose(from_npy, from_wav, atol=1e-6)
    assert np.abs(from_npy).max() == pytest.approx(np.abs(wave).max(), abs=0.01)  # the scale of the samples written
