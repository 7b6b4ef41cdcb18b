"""The standard-library 16-bit PCM WAV reader (``polymodal.utils.wav``) shared by training and the
deployment runtime: a RIFF size that understates the file is not truncation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from polymodal.errors import DecodeError
from polymodal.utils.wav import read_pcm_wav

SR = 8000


def pcm_wav(frames: int, *, riff_size: int | None = None, keep: int | None = None) -> tuple[bytes, np.ndarray]:
    """A mono 16-bit WAV of ``frames`` samples as bytes, with its RIFF size (bytes 4-8) replaced by
    ``riff_size`` and cut to its first ``keep`` bytes when given; and the samples as they read."""
    samples = (np.arange(frames) % 200 - 100).astype(np.int16) * 300
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, SR, subtype="PCM_16", format="WAV")
    data = bytearray(buffer.getvalue())
    if riff_size is not None:
        data[4:8] = riff_size.to_bytes(4, "little")
    return bytes(data[:keep]), samples.astype(np.float32) / 32768


@pytest.mark.parametrize("riff_size", [123, 36 + 2 * 1000 - 100])
@pytest.mark.parametrize("as_path", [True, False])
def test_an_understated_riff_size_still_reads_every_frame(tmp_path, riff_size, as_path):
    """Python's wave stops reading at the RIFF size; libsndfile, and this reader, read the whole data chunk."""
    data, expected = pcm_wav(1000, riff_size=riff_size)
    (tmp_path / "a.wav").write_bytes(data)
    assert soundfile.info(str(tmp_path / "a.wav")).frames == 1000
    wave, rate = read_pcm_wav(str(tmp_path / "a.wav") if as_path else io.BytesIO(data))
    assert rate == SR
    np.testing.assert_array_equal(wave, expected)


@pytest.mark.parametrize("riff_size", [None, 123])
def test_a_data_chunk_past_the_end_of_the_file_is_truncation_whatever_the_riff_size(tmp_path, riff_size):
    data, _ = pcm_wav(1000)
    header = len(data) - 2000
    cut, _ = pcm_wav(1000, riff_size=riff_size, keep=header + 2 * 600 + 1)  # 600 whole frames and a half
    (tmp_path / "a.wav").write_bytes(cut)
    for source in (str(tmp_path / "a.wav"), io.BytesIO(cut)):
        with pytest.raises(DecodeError, match="truncated WAV: header declares 1000 frames, the file holds 600$"):
            read_pcm_wav(source)
