"""Video decoding (PyAV containers, frame folders, ``.npy``), frame sampling, image-style frame
preprocessing, the audio track as an audio modality, and corrupt files. Tiny clips are written
into tmp_path; frame ``i`` is a flat grey of brightness ``20 * i`` so sampled frames are recognisable."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from polymodal.config import load_config
from polymodal.config.modalities import AudioModality, VideoModality
from polymodal.data.modalities import build_preprocessor
from polymodal.data.pipeline import DataPipeline
from polymodal.data.video_io import sample_indices, sample_times, write_video
from polymodal.errors import DecodeError

from ..helpers import as_tensors

FRAMES = 10


def clip(frames: int = FRAMES, size: tuple[int, int] = (16, 24)) -> np.ndarray:
    """(T, H, W) uint8, frame i filled with 20 * i."""
    return np.stack([np.full(size, 20 * i, np.uint8) for i in range(frames)])


def tone(seconds: float = 1.0, rate: int = 8000, hz: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def video(**preprocess: object) -> object:
    return build_preprocessor(VideoModality(kind="video", column="v", preprocess={"size": 8, "color": "gray",
                                                                                   "resize": "stretch", **preprocess}), "v")


def brightness(x: np.ndarray) -> np.ndarray:
    """Per-frame mean of a decoded (T, H, W, C) clip."""
    return x.reshape(x.shape[0], -1).mean(axis=1)


def test_sample_indices_uniform_and_stride():
    np.testing.assert_array_equal(sample_indices(10, 4, "uniform", 1), [0, 3, 6, 9])
    np.testing.assert_array_equal(sample_indices(3, 5, "uniform", 1), [0, 0, 1, 2, 2])  # short clip repeats
    np.testing.assert_array_equal(sample_indices(10, 3, "stride", 3), [0, 3, 6])
    np.testing.assert_array_equal(sample_indices(4, 3, "stride", 3), [0, 3])  # fewer than asked


def test_sample_times_follows_the_clock_and_is_index_sampling_at_a_constant_rate():
    # 10 frames in the first 0.1 s, then 5 frames 0.5 s apart (to 2.5 s): instants 0, 0.625, 1.25, 1.875, 2.5 s
    times = np.asarray([10 * i for i in range(10)] + [500 + 500 * i for i in range(5)])  # ms
    np.testing.assert_array_equal(sample_times(times, 5), [0, 10, 11, 12, 14])
    assert sample_indices(15, 5, "uniform", 1).tolist() == [0, 4, 7, 10, 14]  # by index: 4 of 5 in the burst
    # constant rate, timestamps rounded to whole ticks (30 fps in ms): exactly index sampling
    rounded = np.round(np.arange(45) * 1000 / 30).astype(np.int64)
    for frames in (4, 7, 45, 60):
        np.testing.assert_array_equal(sample_times(rounded, frames), sample_indices(45, frames, "uniform", 1))
    np.testing.assert_array_equal(sample_times(np.asarray([0]), 3), [0, 0, 0])
    np.testing.assert_array_equal(sample_times(np.asarray([0, 7]), 3), [0, 0, 1])
    # a repeated stamp: the stamps are not trusted, frames are sampled by index
    np.testing.assert_array_equal(sample_times(np.asarray([0, 0, 33, 67, 100, 500]), 3), [0, 2, 5])


def write_stamped(path: str, values: list[int], stamps: list[int], tick: Fraction = Fraction(1, 1000),
                  last_held: int | None = None) -> None:
    """A clip whose frame i is grey level ``values[i]`` shown at ``stamps[i]`` ticks (variable rate);
    ``last_held``: how many ticks the last frame stays on screen."""
    import av

    codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(Path(path).suffix, "libx264")
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        stream.codec_context.time_base = tick
        packets = []
        for value, stamp in zip(values, stamps, strict=True):
            frame = av.VideoFrame.from_ndarray(np.full((16, 16, 3), value, np.uint8), format="rgb24")
            frame.pts, frame.time_base = stamp, tick
            packets += stream.encode(frame)
        packets += stream.encode()
        if last_held is not None:
            max(packets, key=lambda packet: packet.pts).duration = last_held
        for packet in packets:
            container.mux(packet)


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".mp4"])
def test_a_clip_ending_on_a_frame_held_for_seconds_is_whole(tmp_path, suffix):
    """A screen recording's last frame may stay on screen far longer than the others: the header's
    duration counts it, and so does the check for truncation."""
    path = str(tmp_path / f"still{suffix}")
    write_stamped(path, [20 * i for i in range(10)], [100 * i for i in range(10)], last_held=4000)
    x, length = video(frames=4).decode(path)  # uniform: decoded to the end, where the check runs
    assert length == 4
    assert brightness(x)[0] == pytest.approx(0, abs=8) and brightness(x)[-1] == pytest.approx(180, abs=8)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_uniform_sampling_of_a_variable_frame_rate_clip_is_uniform_in_time(tmp_path, suffix):
    path = str(tmp_path / f"vfr{suffix}")
    stamps = [10 * i for i in range(10)] + [500 + 500 * i for i in range(5)]  # a burst, then slow frames
    write_stamped(path, [15 * i for i in range(15)], stamps)
    x, length = video(frames=5).decode(path)
    assert length == 5
    # the frames on screen at 0, 0.625, 1.25, 1.875 and 2.5 s: 0, 10, 11, 12, 14 (grey 15 * index, lossy)
    np.testing.assert_allclose(brightness(x), [0, 150, 165, 180, 210], atol=6)
    x, _ = video(frames=3, sampling="stride", stride=5).decode(path)  # stride counts frames, not time
    np.testing.assert_allclose(brightness(x), [0, 75, 150], atol=6)


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_a_recorder_dropping_frames_in_a_one_tick_per_frame_time_base_is_sampled_in_time(tmp_path, suffix):
    # 30 fps for 1 s, then every other frame dropped for 2 s; an AVI's time base is one frame (1/30 s)
    stamps = list(range(30)) + list(range(31, 90, 2))
    path = str(tmp_path / f"half{suffix}")
    write_stamped(path, [4 * i for i in range(len(stamps))], stamps, Fraction(1, 30))
    x, _ = video(frames=7).decode(path)
    # on screen at 0, 14.8, 29.7, 44.5, 59.3, 74.2 and 89 ticks: frames 0, 14, 29, 36, 44, 51, 59 (by index: 0, 10, 20...)
    np.testing.assert_allclose(brightness(x), [4 * i for i in (0, 14, 29, 36, 44, 51, 59)], atol=6)


def test_frames_an_edit_list_trims_are_not_counted(tmp_path):
    # three lead-in frames before the clip's start (negative stamps): the mp4 muxer writes an edit
    # list, the demuxer marks their packets discarded, and decoding drops them
    stamps = [-30, -20, -10] + [10 * i for i in range(10)] + [500 + 500 * i for i in range(5)]
    path = str(tmp_path / "trimmed.mp4")
    write_stamped(path, [255] * 3 + [15 * i for i in range(15)], stamps)
    x, _ = video(frames=5).decode(path)
    np.testing.assert_allclose(brightness(x), [0, 150, 165, 180, 210], atol=6)  # as the untrimmed clip, in time


def test_a_clip_over_max_frames_by_its_header_is_refused_before_it_is_read(tmp_path, monkeypatch):
    from polymodal.data import video_io

    path = str(tmp_path / "long.mp4")
    write_video(path, noise_clip(40), fps=10)
    monkeypatch.setattr(video_io, "_packet_times", lambda *_: pytest.fail("the file was demuxed"))
    with pytest.raises(DecodeError, match=r"video has 40 frames, more than preprocess.max_frames \(10\)"):
        video(frames=4, max_frames=10).decode(path)


def test_a_headerless_clip_over_max_frames_is_refused_while_its_timestamps_are_read(tmp_path):
    path = str(tmp_path / "long.webm")
    write_video(path, noise_clip(40), fps=10)
    with pytest.raises(DecodeError, match=r"more than preprocess.max_frames \(10\)"):
        video(frames=4, max_frames=10).decode(path)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_timestamps_count_the_frames_so_a_headerless_clip_decodes_once(tmp_path, monkeypatch, suffix):
    from polymodal.data import video_io

    path = str(tmp_path / f"clip{suffix}")
    write_video(path, noise_clip(30), fps=10)
    passes = count_passes(monkeypatch)
    got = video_io.read_frames(path, lambda n: sample_indices(n, 4, "uniform", 1), 1000, np.load,
                               lambda times: sample_times(times, 4))
    assert passes == [30]  # webm has no header count: the stamps gave it, one pass instead of two
    for image, expected in zip(got, decode_all_then_pick(path, lambda n: sample_indices(n, 4, "uniform", 1)),
                               strict=True):
        np.testing.assert_array_equal(np.asarray(image), expected)


def noise_clip(frames: int, seed: int = 0) -> np.ndarray:
    """(T, 16, 24, 3) uint8 random frames: every decoded frame differs from its neighbours."""
    return np.random.default_rng(seed).integers(0, 256, (frames, 16, 24, 3), dtype=np.uint8)


def decode_all_then_pick(path: str, pick) -> list[np.ndarray]:
    """The earlier behaviour: every frame of the clip decoded and held, then the sampled ones kept."""
    import av

    with av.open(path) as container:
        decoded = list(container.decode(container.streams.video[0]))
        return [np.asarray(decoded[i].to_image()) for i in pick(len(decoded))]


def count_passes(monkeypatch) -> list[int]:
    """The frames read by each decoding pass of a container, recorded as decoding goes."""
    from polymodal.data import video_io

    passes: list[int] = []
    decode = video_io._decode

    def counted(*args, **kwargs):
        kept, seen = decode(*args, **kwargs)
        passes.append(seen)
        return kept, seen

    monkeypatch.setattr(video_io, "_decode", counted)
    return passes


SAMPLINGS = [(4, "uniform", 1), (45, "uniform", 1), (5, "stride", 3), (20, "stride", 4), (1, "uniform", 1)]


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])  # the frame count is in the header / must be counted
@pytest.mark.parametrize("reported", [None, 20, 45])  # None: the header's own count; else a wrong one
def test_selective_decoding_keeps_the_frames_of_decoding_everything(tmp_path, monkeypatch, suffix, reported):
    from polymodal.data import video_io

    path = str(tmp_path / f"clip{suffix}")
    write_video(path, noise_clip(30), fps=10)
    if reported is not None:  # a header that lies: too few or too many frames (the clip has 30)
        monkeypatch.setattr(video_io, "reported_frames", lambda _: reported)
    for frames, sampling, stride in SAMPLINGS:
        def pick(total, frames=frames, sampling=sampling, stride=stride):
            return sample_indices(total, frames, sampling, stride)

        got = video_io.read_frames(path, pick, 1000, np.load)
        expected = decode_all_then_pick(path, pick)
        assert len(got) == len(expected) == len(pick(30))
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
@pytest.mark.parametrize(("frames", "sampling", "stride", "expected"),
                         [(4, "uniform", 1, [0, 20, 39, 59]), (3, "stride", 5, [0, 5, 10])])
def test_decoding_a_long_clip_converts_only_the_sampled_frames(tmp_path, monkeypatch, suffix, frames, sampling, stride,
                                                               expected):
    from polymodal.data import video_io

    path = str(tmp_path / f"long{suffix}")
    write_video(path, noise_clip(60), fps=10)
    converted: list[np.ndarray] = []

    def to_image(frame: object) -> Image.Image:
        converted.append(np.asarray(frame.to_image()))
        return frame.to_image()

    monkeypatch.setattr(video_io, "_to_image", to_image)
    passes = count_passes(monkeypatch)
    got = video_io.read_frames(path, lambda n: sample_indices(n, frames, sampling, stride), 100_000, np.load)
    everything = decode_all_then_pick(path, lambda n: np.arange(n))
    for image, index in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(image), everything[index])
    # the 60 frames are never all held: with a header count (mp4) or a filled stride, one pass converts
    # just the sampled frames; a headerless uniform sampling (webm) also keeps frame 0 while it counts
    assert len(converted) == (frames + 1 if (suffix, sampling) == (".webm", "uniform") else frames)
    # a filled stride stops right after its last frame; uniform reads the clip (twice without a header count)
    assert passes == ([expected[-1] + 1] if sampling == "stride" else [60, 60] if suffix == ".webm" else [60])


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".webm"])
def test_containers_decode_the_sampled_frames(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    write_video(str(path), clip(), fps=10)
    x, length = video(frames=4).decode(str(path))
    assert x.shape == (4, 8, 8, 1) and length == 4
    # frames 0, 3, 6, 9 -> brightness 0, 60, 120, 180 (lossy codecs: a few levels off)
    np.testing.assert_allclose(brightness(x), [0, 60, 120, 180], atol=8)


@pytest.mark.parametrize("suffix", [".ts", ".m2ts", ".mpg", ".3gp"])
def test_other_containers_pyav_reads_are_video_files(tmp_path, suffix):
    """An MPEG transport stream (what network video recorders write), program stream or 3GPP
    file decodes as a video, not as a .npy."""
    path = tmp_path / f"clip{suffix}"
    write_video(str(path), clip(), fps=10, codec="mpeg4" if suffix == ".mpg" else None)
    x, length = video(frames=4).decode(str(path))
    assert length == 4
    np.testing.assert_allclose(brightness(x), [0, 60, 120, 180], atol=10)


def test_an_animated_gif_is_a_video_file(tmp_path):
    Image.fromarray(clip()[0]).save(tmp_path / "anim.gif", save_all=True,
                                    append_images=[Image.fromarray(f) for f in clip()[1:]], duration=100)
    x, length = video(frames=4).decode(str(tmp_path / "anim.gif"))
    assert length == 4
    np.testing.assert_allclose(brightness(x), [0, 60, 120, 180], atol=2)


def test_the_sound_track_of_an_mpeg_ts_is_an_audio_modality(tmp_path):
    write_video(str(tmp_path / "cam.ts"), clip(), fps=10, audio=tone(), sample_rate=8000)
    prep = build_preprocessor(AudioModality(kind="audio", column="a", preprocess={
        "sample_rate": 8000, "max_seconds": 1.0, "features": "waveform", "normalize": "none"},
        encoder={"name": "rnn"}), "a")
    wave = prep.featurize([prep.decode(str(tmp_path / "cam.ts"))])["x"][0, :, 0]
    assert abs(np.argmax(np.abs(np.fft.rfft(wave))) * 8000 / len(wave) - 440) < 5


@pytest.mark.parametrize("name", ["still.jpg", "sound.wav", "notes.txt", "clip"])
def test_a_file_of_another_type_in_a_video_column_is_refused_naming_its_type(tmp_path, name):
    """Not read as a .npy ("the magic string is not correct"): its type is named, and what a video cell takes."""
    Image.fromarray(clip()[0]).save(tmp_path / "still.jpg")
    for other in ("sound.wav", "notes.txt", "clip"):
        (tmp_path / other).write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    suffix = Path(name).suffix
    found = f"'{suffix}'" if suffix else r"\(the file name has no suffix\)"
    with pytest.raises(DecodeError, match=rf"unsupported video file type {found}; a video cell takes a video file "
                                          r"\(.*\.mp4.*\.ts.*\), a folder of frame images \(.*\) or a \.npy of frames$"):
        video().decode(str(tmp_path / name))


def test_a_row_of_a_packed_npy_is_still_a_clip(tmp_path):
    np.save(tmp_path / "clips.npy", np.stack([clip(), clip()[::-1]]))
    x, length = video(frames=2, sampling="stride", stride=9).decode(str(tmp_path / "clips.npy#1"))
    assert length == 2
    np.testing.assert_array_equal(brightness(x), [180, 0])


def test_the_video_suffixes_are_the_sound_tracks_and_the_runtimes():
    from polymodal.data.modalities import audio
    from polymodal.data.video_io import VIDEO_SUFFIXES
    from polymodal.deploy.features.video import is_video

    assert audio.VIDEO_SUFFIXES is VIDEO_SUFFIXES
    assert {".ts", ".m2ts", ".gif", ".3gp", ".flv", ".wmv", ".mpg", ".m4v"} <= VIDEO_SUFFIXES
    assert all(is_video(f"clip{suffix.upper()}") for suffix in VIDEO_SUFFIXES)


def test_a_frame_folder_mixing_image_sizes_is_refused_whichever_frames_are_sampled(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip()):
        size = (64, 80) if i % 3 == 0 else (16, 24)
        Image.fromarray(np.resize(frame, size)).save(folder / f"f{i}.png")
    for frames in (4, 10):  # 4: frames 0, 3, 6, 9 alone, all of one size
        with pytest.raises(DecodeError, match=r"frame folder mixes image sizes: 24x16 \(6: f1.png, f2.png, f4.png, "
                                              r"\.\.\.\) and 80x64 \(4: f0.png, f3.png, f6.png, \.\.\.\); the frames of "
                                              r"a clip share one size"):
            video(frames=frames).decode(str(folder))


def test_frame_folder_and_npy_are_exact(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip()):
        Image.fromarray(frame).save(folder / f"{i:04d}.png")
    np.save(tmp_path / "clip.npy", clip())
    for source in (folder, tmp_path / "clip.npy"):
        x, length = video(frames=3, sampling="stride", stride=4).decode(str(source))
        assert length == 3
        np.testing.assert_array_equal(brightness(x), [0, 80, 160])


def test_16_bit_frames_in_a_folder_read_as_16_bit_images_do(tmp_path):
    from polymodal.config.modalities import ImageModality

    folder = tmp_path / "frames"
    folder.mkdir()
    ramp = (np.arange(16 * 24, dtype=np.uint16) * 150).reshape(16, 24)
    Image.fromarray(ramp).save(folder / "0000.png")
    image = build_preprocessor(ImageModality(kind="image", column="c", preprocess={"size": [16, 24], "color": "gray"}), "i")
    x, _ = video(frames=1, size=[16, 24]).decode(str(folder))
    np.testing.assert_array_equal(x[0], image.decode(str(folder / "0000.png")))
    assert x.max() == 255 and len(np.unique(x)) > 200  # scaled by the maximum, not clipped at 255


@pytest.mark.parametrize(("levels", "dtype", "expected"), [
    ([0.5, 1.0, 2.0, 50.0, 200.0], np.float32, [0, 1, 2, 50, 200]),  # 0..255 floats: no frame taken as [0, 1]
    ([100, 300, 1000, 4000, 65535], np.uint16, [0, 1, 4, 16, 255]),  # 16-bit: scaled by the clip's maximum
])
def test_a_npy_clip_is_scaled_once_not_frame_by_frame(tmp_path, levels, dtype, expected):
    """A fade-in stays a fade-in: each frame's own range would map the dark frames to full white."""
    frames = np.stack([np.full((8, 8), level, dtype) for level in levels])
    np.save(tmp_path / "fade.npy", frames)
    x, _ = video(frames=len(levels)).decode(str(tmp_path / "fade.npy"))
    np.testing.assert_allclose(brightness(x), expected, atol=1)
    assert (np.diff(brightness(x)) >= 0).all()


def test_stride_on_a_short_clip_pads_and_masks(tmp_path):
    np.save(tmp_path / "short.npy", clip(frames=3))
    prep = video(frames=4, sampling="stride", stride=2)
    arrays = prep.featurize([prep.decode(str(tmp_path / "short.npy"))])
    assert arrays["length"].tolist() == [2]
    assert not arrays["x"][0, 2:].any()  # padding is zeros
    batch = prep.to_batch(as_tensors(arrays), train=False)
    assert batch["x"].shape == (1, 4, 1, 8, 8)  # (B, T, C, H, W)
    assert batch["mask"].tolist() == [[True, True, False, False]]


def test_frames_are_normalised_like_images(tmp_path):
    np.save(tmp_path / "a.npy", clip())
    prep = video(frames=5, normalize="standard")
    arrays = prep.featurize([prep.decode(str(tmp_path / "a.npy"))])
    prep.fit_features(arrays)
    x = prep.to_batch(as_tensors(arrays), train=False)["x"]
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(unbiased=False)) - 1.0) < 1e-3
    assert prep.encoder_context() == {"in_channels": 1, "size": (8, 8), "frames": 5}


def test_audio_track_of_a_video_is_an_audio_modality(tmp_path):
    path = tmp_path / "talk.mp4"
    write_video(str(path), clip(), fps=10, audio=tone(), sample_rate=8000)
    prep = build_preprocessor(AudioModality(kind="audio", column="a", preprocess={
        "sample_rate": 8000, "max_seconds": 1.0, "features": "waveform", "normalize": "none"},
        encoder={"name": "rnn"}), "a")
    wave = prep.featurize([prep.decode(str(path))])["x"][0, :, 0]
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 8000 / len(wave) - 440) < 5  # the 440 Hz tone came through


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".avi", ".ts"])
def test_the_sound_track_starts_when_the_recording_does(tmp_path, suffix):
    """A burst at 0.5 s is read back at 0.5 s: the encoder's leading delay (AAC's 1,024 priming
    samples, Opus's pre-skip) is trimmed, not read as a late start."""
    from polymodal.data.video_io import read_video_audio

    rate, burst = 8000, np.zeros(8000, np.float32)
    burst[4000:4080] = 0.8 * np.sin(2 * np.pi * 1000 * np.arange(80) / rate)  # 10 ms of 1 kHz at 0.5 s
    write_video(str(tmp_path / f"burst{suffix}"), clip(), fps=10, audio=burst, sample_rate=rate)
    wave, read_rate = read_video_audio(str(tmp_path / f"burst{suffix}"))
    onset = int(np.argmax(np.abs(wave) > 0.2)) / read_rate
    assert abs(onset - 0.5) < 0.001, f"the burst comes {1000 * (onset - 0.5):.1f} ms late"


def write_offset_clip(path: Path, audio_start: float, video_start: float = 0.0, audio_codec: str = "aac",
                      rate: int = 8000) -> None:
    """A 1 s clip (10 frames at 10 fps) whose sound track, a burst at 0.5 s into it, is stamped to
    start at ``audio_start`` s and whose pictures at ``video_start`` s (PyAV, as a recorder muxes
    streams that did not start together)."""
    import av

    burst = np.zeros(rate, np.float32)
    burst[rate // 2:rate // 2 + 80] = 0.8
    with av.open(str(path), "w") as container:
        video_stream = container.add_stream("libx264", rate=10)
        video_stream.width, video_stream.height, video_stream.pix_fmt = 24, 16, "yuv420p"
        audio_stream = container.add_stream(audio_codec, rate=rate)
        audio_stream.layout = "mono"
        for i, image in enumerate(clip()):
            frame = av.VideoFrame.from_ndarray(np.repeat(image[..., None], 3, axis=-1), format="rgb24")
            frame.pts, frame.time_base = round(video_start * 10) + i, Fraction(1, 10)
            for packet in video_stream.encode(frame):
                container.mux(packet)
        for packet in video_stream.encode():
            container.mux(packet)
        sound = av.AudioFrame.from_ndarray((burst * 32767).astype(np.int16)[None], format="s16", layout="mono")
        sound.sample_rate, sound.pts, sound.time_base = rate, round(audio_start * rate), Fraction(1, rate)
        for packet in audio_stream.encode(sound):
            container.mux(packet)
        for packet in audio_stream.encode():
            container.mux(packet)


@pytest.mark.parametrize(("suffix", "audio_codec"), [(".mkv", "pcm_s16le"), (".mp4", "aac"), (".mkv", "aac"),
                                                     (".ts", "aac")])
@pytest.mark.parametrize(("audio_start", "video_start"), [(0.5, 0.0), (0.0, 0.3)])
def test_the_sound_track_is_aligned_to_the_first_frame(tmp_path, suffix, audio_codec, audio_start, video_start):
    """Sample 0 plays with the first frame: a track that starts 0.5 s after the pictures is read
    after 0.5 s of silence, one that starts 0.3 s before them without its first 0.3 s (the
    priming delay an mp4 records, or an MPEG-TS leaves in its timestamps, trimmed first)."""
    from polymodal.data.video_io import read_video_audio

    path = tmp_path / f"offset{suffix}"
    write_offset_clip(path, audio_start, video_start, audio_codec)
    wave, rate = read_video_audio(str(path))
    onset = int(np.argmax(np.abs(wave) > 0.2)) / rate
    expected = 0.5 + audio_start - video_start
    assert abs(onset - expected) < 0.002, f"the burst comes at {onset:.3f} s, not {expected:.3f} s"
    assert abs(wave.size / rate - (1.0 + audio_start - video_start)) < 0.2  # padded or cut, not merely moved


def test_an_aligned_track_is_held_to_max_seconds_by_its_aligned_length(tmp_path):
    from polymodal.data.video_io import read_video_audio

    write_offset_clip(tmp_path / "late.mkv", 0.5, audio_codec="pcm_s16le")  # 1 s of sound after 0.5 s of silence
    with pytest.raises(DecodeError, match="the audio track is longer than 1.2 s"):
        read_video_audio(str(tmp_path / "late.mkv"), max_seconds=1.2)
    write_offset_clip(tmp_path / "early.mkv", 0.0, 0.3, audio_codec="pcm_s16le")  # 0.7 s once its lead is cut
    assert read_video_audio(str(tmp_path / "early.mkv"), max_seconds=0.8)[0].size == round(0.7 * 8000)


def test_a_sound_track_ending_before_the_first_frame_is_refused_saying_so(tmp_path):
    from polymodal.data.video_io import read_video_audio

    write_offset_clip(tmp_path / "gone.mkv", 0.0, 1.5, audio_codec="pcm_s16le")
    with pytest.raises(DecodeError, match=r"the audio track ends before the first video frame \(it starts 1.500 s "
                                          r"before the pictures and lasts 1.000 s\)"):
        read_video_audio(str(tmp_path / "gone.mkv"))


def test_a_video_without_audio_track_is_told_apart_as_absent_naming_the_file(tmp_path):
    from polymodal.data.video_io import NoAudioTrackError, has_audio_track
    from polymodal.errors import AbsentInputError

    path = tmp_path / "mute.mp4"
    write_video(str(path), clip(), fps=10)
    prep = build_preprocessor(AudioModality(kind="audio", column="a", preprocess={"sample_rate": 8000}), "a")
    with pytest.raises(NoAudioTrackError, match=r"no audio track \(a camera without a microphone\?\)$") as err:
        prep.decode(str(path))
    assert isinstance(err.value, AbsentInputError) and str(path) in str(err.value)
    assert not has_audio_track(str(path))
    write_video(str(tmp_path / "talk.mp4"), clip(), fps=10, audio=tone())
    assert has_audio_track(str(tmp_path / "talk.mp4"))


def test_with_on_error_missing_a_video_without_sound_is_a_row_without_its_audio_modality(tmp_path):
    write_video(str(tmp_path / "talk.mp4"), clip(), fps=10, audio=tone())
    write_video(str(tmp_path / "mute.mp4"), clip(), fps=10)
    pd.DataFrame({"clip": ["talk.mp4", "mute.mp4"], "y": [0, 1]}).to_csv(tmp_path / "m.csv", index=False)
    pipeline = DataPipeline(load_config({
        "task": "classification", "target": "y", "data": {"on_error": "missing"},
        "modalities": {"v": {"kind": "video", "column": "clip", "preprocess": {"size": 8, "frames": 2}},
                       "sound": {"kind": "audio", "column": "clip", "preprocess": {"sample_rate": 8000}}}}))
    table = pipeline.encode(pipeline.read(tmp_path / "m.csv", require_target=True))
    assert table.rows.tolist() == [0, 1]
    assert table.modalities["v"].present.tolist() == [True, True]
    assert table.modalities["sound"].present.tolist() == [True, False]


def test_corrupt_video_fails_or_is_skipped_like_other_files(tmp_path):
    write_video(str(tmp_path / "good.mp4"), clip(), fps=10)
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    pd.DataFrame({"v": ["good.mp4", "bad.mp4"], "y": [0, 1]}).to_csv(tmp_path / "m.csv", index=False)

    def pipeline(on_error: str) -> DataPipeline:
        return DataPipeline(load_config({
            "task": "classification", "target": "y", "data": {"on_error": on_error},
            "modalities": {"v": {"kind": "video", "column": "v", "preprocess": {"size": 8, "frames": 2}}}}))

    strict = pipeline("raise")
    with pytest.raises(DecodeError, match="corrupt video") as err:
        strict.encode(strict.read(tmp_path / "m.csv", require_target=True))
    assert "bad.mp4" in str(err.value) and "row" in str(err.value)

    lenient = pipeline("skip")
    table = lenient.encode(lenient.read(tmp_path / "m.csv", require_target=True))
    assert table.rows.tolist() == [0]
    assert [Path(s.path).name for s in table.skipped] == ["bad.mp4"]


def test_an_empty_or_foreign_file_is_not_called_a_cut_mp4(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DecodeError, match=r"unreadable video: the file is empty \(0 bytes\)$"):
        video().decode(str(tmp_path / "empty.mp4"))
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    with pytest.raises(DecodeError, match=r"interrupted while recording\) reads so, as does a file that is not a video$"):
        video().decode(str(tmp_path / "noise.mp4"))


def test_overlong_video_is_refused(tmp_path):
    np.save(tmp_path / "long.npy", clip(frames=12))
    write_video(str(tmp_path / "long.mp4"), clip(frames=12), fps=10)  # the header says 12
    write_video(str(tmp_path / "long.webm"), clip(frames=12), fps=10)  # no header count: counted
    for name in ("long.npy", "long.mp4", "long.webm"):
        with pytest.raises(DecodeError, match="max_frames"):
            video(max_frames=10).decode(str(tmp_path / name))


def sweeping_clips(n: int, frames: int = 4, side: int = 8) -> dict[str, torch.Tensor]:
    """``n`` cached-form clips, frame ``t`` lit in column ``t`` only (no frame is its own mirror)."""
    x = np.zeros((n, frames, side, side, 1), np.uint8)
    for t in range(frames):
        x[:, t, :, t] = 255
    return as_tensors({"x": x, "length": np.full(n, frames, np.int32)})


def test_training_augmentation_flips_a_clip_whole_or_not_at_all():
    prep = video(frames=4, augment={"hflip": True})
    arrays = sweeping_clips(32)
    plain = prep.to_batch(arrays, train=False)["x"]  # (B, T, C, H, W)
    torch.manual_seed(0)
    train = prep.to_batch(arrays, train=True)["x"]
    flipped = (train == plain.flip(-1)).flatten(2).all(dim=2)  # (B, T)
    unchanged = (train == plain).flatten(2).all(dim=2)
    assert (flipped | unchanged).all()  # every frame is the original or its mirror
    assert (flipped.all(dim=1) | unchanged.all(dim=1)).all()  # and all frames of a clip alike
    assert flipped.all(dim=1).any() and unchanged.all(dim=1).any()  # P(all 32 clips alike) = 2**-31


def test_training_augmentation_moves_and_recolours_every_frame_of_a_clip_alike():
    rng = np.random.default_rng(0)
    still = np.repeat(rng.integers(0, 256, (1, 1, 12, 12, 1), np.uint8), 5, axis=1)  # 5 equal frames
    arrays = as_tensors({"x": np.repeat(still, 6, axis=0), "length": np.full(6, 5, np.int32)})  # 6 equal clips
    prep = video(size=12, frames=5, augment={"rotate": 30, "translate": 0.2, "brightness": 0.5})
    plain = prep.to_batch(arrays, train=False)["x"]
    torch.manual_seed(0)
    train = prep.to_batch(arrays, train=True)["x"]
    assert torch.equal(train, train[:, :1].expand_as(train))  # one draw per clip: its frames stay equal
    draws = {train[b, 0].numpy().tobytes() for b in range(6)}
    assert len(draws) == 6 and not torch.equal(train[0], plain[0])  # a draw of its own for each clip
    assert torch.equal(prep.to_batch(arrays, train=False)["x"], plain)  # evaluation batches never change


def test_video_config_takes_augment_and_refuses_unknown_keys():
    from polymodal.errors import ConfigError

    base = {"task": "classification", "target": "y", "modalities": {"v": {"kind": "video", "column": "v"}}}
    augmented = {"kind": "video", "column": "v", "preprocess": {"augment": {"hflip": True}}}
    assert load_config({**base, "modalities": {"v": augmented}}).modalities["v"].preprocess.augment.hflip
    with pytest.raises(ConfigError, match="fps"):
        load_config({**base, "modalities": {"v": {"kind": "video", "column": "v", "preprocess": {"fps": 3}}}})
    with pytest.raises(ConfigError, match=r"modalities\.v\.preprocess.*stride applies with sampling: stride"):
        load_config({**base, "modalities": {"v": {"kind": "video", "column": "v", "preprocess": {"stride": 2}}}})
    strided = {"kind": "video", "column": "v", "preprocess": {"sampling": "stride", "stride": 2}}
    assert load_config({**base, "modalities": {"v": strided}}).modalities["v"].preprocess.stride == 2


def test_standard_statistics_leave_out_the_padding_frames(tmp_path):
    np.save(tmp_path / "short.npy", clip(frames=3))  # brightness 0, 20, 40
    prep = video(frames=5, sampling="stride", stride=1, normalize="standard")
    arrays = prep.featurize([prep.decode(str(tmp_path / "short.npy"))])
    assert arrays["length"].tolist() == [3]
    prep.fit_features(arrays)
    values = np.array([0.0, 20.0, 40.0]) / 255.0  # the three real frames, every pixel alike
    np.testing.assert_allclose(prep.frame.mean, [values.mean()], rtol=1e-6)
    np.testing.assert_allclose(prep.frame.std, [values.std()], rtol=1e-6)


def test_a_frame_folder_with_unpadded_numbers_is_read_in_natural_order(tmp_path):
    """FFmpeg's default ``frame%d.png`` (and ``0.png``..``11.png``) in string order would put 10 and
    11 before 2."""
    from polymodal.data.video_io import frame_files, natural_key

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip(frames=12)):
        Image.fromarray(frame).save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("not a frame")
    assert [p.name for p in frame_files(folder)] == [f"frame{i}.png" for i in range(12)]
    x, length = video(frames=12, sampling="stride").decode(str(folder))
    assert length == 12
    np.testing.assert_array_equal(brightness(x), [20 * i for i in range(12)])
    assert sorted(["f_10.png", "f_9.png", "f_09b.png", "01.png", "1.png", "a.png"], key=natural_key) == \
        ["01.png", "1.png", "a.png", "f_9.png", "f_09b.png", "f_10.png"]


def test_a_container_with_frames_past_max_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    from polymodal.data import video_io

    path = str(tmp_path / "wide.mp4")
    write_video(path, clip(size=(16, 24)), fps=10)
    monkeypatch.setattr(video_io, "_decode", lambda *_: pytest.fail("frames were decoded"))
    with pytest.raises(DecodeError, match=r"video frames are 24x16 = 384 pixels, more than preprocess.max_pixels "
                                          r"\(383\)") as err:
        video(max_pixels=383).decode(path)
    assert path in str(err.value)


def test_frame_folder_images_and_npy_frames_past_max_pixels_are_refused_naming_the_file(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip(frames=3)):
        Image.fromarray(frame).save(folder / f"{i}.png")
    with pytest.raises(DecodeError, match=r"frame is 24x16 = 384 pixels, more than preprocess.max_pixels") as err:
        video(max_pixels=383).decode(str(folder))
    assert str(folder / "0.png") in str(err.value)
    assert video(max_pixels=384).decode(str(folder))[1] == 8  # at the limit is fine
    np.save(tmp_path / "first.npy", np.stack([clip(frames=3)] * 3, axis=1))  # (T, C, H, W): 24x16 frames
    with pytest.raises(DecodeError, match=r"frames are 24x16 = 384 pixels"):
        video(max_pixels=383).decode(str(tmp_path / "first.npy"))
    assert video(max_pixels=384).decode(str(tmp_path / "first.npy"))[1] == 8


def test_a_frame_pillow_refuses_as_a_bomb_is_skipped_like_other_bad_files(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 24x16 frames pass 2x the limit: DecompressionBombError
    for name, frames in (("good", 2), ("bomb", 2)):
        (tmp_path / name).mkdir()
        for i, frame in enumerate(clip(frames=frames, size=(4, 4) if name == "good" else (16, 24))):
            Image.fromarray(frame).save(tmp_path / name / f"{i}.png")
    with pytest.raises(DecodeError, match="decompression bomb") as err:
        video().decode(str(tmp_path / "bomb"))
    assert str(tmp_path / "bomb" / "0.png") in str(err.value)
    pd.DataFrame({"v": ["good", "bomb"], "y": [0, 1]}).to_csv(tmp_path / "m.csv", index=False)
    lenient = DataPipeline(load_config({
        "task": "classification", "target": "y", "data": {"on_error": "skip"},
        "modalities": {"v": {"kind": "video", "column": "v", "preprocess": {"size": 4, "frames": 2}}}}))
    table = lenient.encode(lenient.read(tmp_path / "m.csv", require_target=True))
    assert table.rows.tolist() == [0] and [Path(s.path).parts[-2] for s in table.skipped] == ["bomb"]


@pytest.mark.parametrize("suffix", [".mp4", ".webm", "folder"])
def test_each_frame_is_converted_as_it_is_decoded_never_held_at_full_resolution(tmp_path, suffix):
    import gc
    import weakref

    from polymodal.data import video_io

    path = tmp_path / f"clip{suffix}"
    if suffix == "folder":
        path.mkdir()
        for i, frame in enumerate(noise_clip(12)):
            Image.fromarray(frame).save(path / f"{i}.png")
    else:
        write_video(str(path), noise_clip(12), fps=10)
    decoded: list[weakref.ref] = []
    alive_at_conversion: list[int] = []

    def convert(image: Image.Image) -> np.ndarray:
        gc.collect()
        alive_at_conversion.append(sum(ref() is not None for ref in decoded))  # full-size frames still held
        decoded.append(weakref.ref(image))
        return np.asarray(image.resize((2, 2)))

    got = video_io.read_frames(str(path), lambda n: sample_indices(n, 6, "uniform", 1), 1000, np.load,
                               lambda times: sample_times(times, 6), convert=convert)
    assert len(got) == 6 and all(a.shape == (2, 2, 3) for a in got)
    assert alive_at_conversion == [0] * len(alive_at_conversion)
    prep = video(frames=6, color="rgb")  # the preprocessor's output is the same as converting afterwards
    plain = video_io.read_frames(str(path), prep._pick, 1000, np.load, prep._pick_times)
    np.testing.assert_array_equal(prep.decode(str(path))[0], np.stack([prep.frame.from_pil(i) for i in plain]))


def truncated(path: Path, keep: float = 0.6) -> Path:
    """A copy of ``path`` cut after ``keep`` of its bytes (an interrupted download or copy)."""
    cut = path.with_name(f"cut_{path.name}")
    data = path.read_bytes()
    cut.write_bytes(data[:int(len(data) * keep)])
    return cut


@pytest.mark.parametrize(("suffix", "options", "expected"),
                         [(".avi", {}, "of 30 frames"), (".webm", {}, "of about 30 frames"),
                          (".mkv", {}, "of about 30 frames"),
                          (".mp4", {"movflags": "faststart"}, "of 30 frames")])  # its index first: still opens
def test_a_truncated_container_is_refused_not_read_as_a_shorter_clip(tmp_path, suffix, options, expected):
    import av

    path = tmp_path / f"clip{suffix}"
    codec = {".webm": "libvpx-vp9", ".avi": "mpeg4"}.get(suffix, "libx264")
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "yuv420p"
        for frame in noise_clip(30):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert video(frames=8).decode(str(path))[1] == 8
    cut = truncated(path)
    with pytest.raises(DecodeError, match=rf"stream ended after \d+ {expected} \(.* s of at least .* s; truncated\?\)"
                       ) as err:
        video(frames=8).decode(str(cut))
    assert str(cut) in str(err.value)


def test_truncated_files_are_skipped_and_an_mp4_without_its_index_is_still_refused(tmp_path):
    for suffix in (".avi", ".webm", ".mp4"):
        write_video(str(tmp_path / f"clip{suffix}"), noise_clip(30), fps=10)
        truncated(tmp_path / f"clip{suffix}")
    hint = r"truncated\? a file cut short \(an mp4 whose index is written last, interrupted while recording\) reads so$"
    with pytest.raises(DecodeError, match=rf"unreadable or corrupt video \(.*Invalid data.*\); {hint}"):
        video().decode(str(tmp_path / "cut_clip.mp4"))  # the mp4 muxer writes its index last: none to open
    from polymodal.data.video_io import read_video_audio

    with pytest.raises(DecodeError, match=hint):  # its sound track, read as an audio modality, alike
        read_video_audio(str(tmp_path / "cut_clip.mp4"))
    cells = ["clip.avi", "cut_clip.avi", "clip.webm", "cut_clip.webm", "cut_clip.mp4"]
    pd.DataFrame({"v": cells, "y": [0, 1, 0, 1, 1]}).to_csv(tmp_path / "m.csv", index=False)
    lenient = DataPipeline(load_config({
        "task": "classification", "target": "y", "data": {"on_error": "skip"},
        "modalities": {"v": {"kind": "video", "column": "v", "preprocess": {"size": 8, "frames": 4}}}}))
    table = lenient.encode(lenient.read(tmp_path / "m.csv", require_target=True))
    assert table.rows.tolist() == [0, 2]
    assert sorted(Path(s.path).name for s in table.skipped) == ["cut_clip.avi", "cut_clip.mp4", "cut_clip.webm"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".avi"])
def test_a_video_track_shorter_than_its_audio_track_is_not_truncated(tmp_path, suffix):
    path = str(tmp_path / f"clip{suffix}")
    write_video(path, clip(frames=10), fps=10, audio=tone(seconds=3.0), sample_rate=8000)  # 1 s of video, 3 s of sound
    x, length = video(frames=4).decode(path)
    assert length == 4
    np.testing.assert_allclose(brightness(x), [0, 60, 120, 180], atol=8)


def test_a_stream_whose_header_gives_no_duration_is_read_as_long_as_it_decodes(tmp_path, monkeypatch):
    """A webm from a browser's MediaRecorder has no duration: nothing to compare the frames with."""
    from polymodal.data import video_headers, video_io

    write_video(str(tmp_path / "clip.webm"), noise_clip(30), fps=10)
    cut = str(truncated(tmp_path / "clip.webm"))
    with pytest.raises(DecodeError, match="truncated"):
        video_io.read_frames(cut, lambda n: sample_indices(n, 3, "uniform", 1), 1000, np.load)
    monkeypatch.setattr(video_headers, "header_seconds", lambda *_: None)
    got = video_io.read_frames(cut, lambda n: sample_indices(n, 3, "uniform", 1), 1000, np.load)
    expected = decode_all_then_pick(cut, lambda n: sample_indices(n, 3, "uniform", 1))
    for image, frame in zip(got, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(image), frame)


def test_a_container_cut_inside_its_header_is_called_truncated_not_silent(tmp_path):
    """An mp4 cut inside its index (written last) opens with no stream at all: that is a damaged
    file, not a clip made without sound (or pictures), and the message says so."""
    from polymodal.data.video_io import read_video_audio

    path = tmp_path / "clip.mp4"
    write_video(str(path), clip(frames=10), fps=10, audio=tone(seconds=1.0), sample_rate=8000)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:data.index(b"moov") + 16])  # the index begun, not finished
    for read in (read_video_audio, video(frames=4).decode):
        with pytest.raises(DecodeError, match="truncated video: the container holds neither a video nor an audio "
                                              "stream") as err:
            read(str(cut))
        assert str(cut) in str(err.value)
    silent = tmp_path / "silent.mp4"
    write_video(str(silent), clip(frames=10), fps=10)
    with pytest.raises(DecodeError, match="the video file holds no audio track"):
        read_video_audio(str(silent))
