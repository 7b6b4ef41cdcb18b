"""Video models export and serve: the frame encoder and temporal model in the graph, clips (and a
video's sound track) decoded by the runtime with the training code (PyAV), tiny clips in tmp."""

from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from polymodal import MultimodalPredictor
from polymodal.deploy.errors import RequestError
from polymodal.deploy.export import export_run
from polymodal.deploy.graph import tracing_reason
from polymodal.deploy.runtime import Runtime

from .helpers import png_bytes, serving

pytest.importorskip("av", reason="pip install av (the 'video' extra)")


def write_clips(folder) -> None:
    """16 clips of a bright square moving right (label 1) or left (label 0), a tone per label as the
    sound track; every third clip holds 3 frames instead of 6 (padded where 5 are read)."""
    from polymodal.data.video_io import write_video

    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        label, n = i % 2, 3 if i % 3 == 0 else 6
        frames = np.zeros((n, 16, 16), np.uint8)
        for t in range(n):
            x = 2 + 2 * t if label else 12 - 2 * t
            frames[t, 6:10, x:x + 3] = 255
        audio = 0.3 * np.sin(2 * np.pi * (300 + 300 * label) * np.arange(4000) / 8000) + 0.01 * rng.standard_normal(4000)
        write_video(str(folder / f"c{i}.mp4"), frames, fps=6, audio=audio.astype(np.float32))
        rows.append({"clip": f"c{i}.mp4", "label": label})
    pd.DataFrame(rows).to_csv(folder / "m.csv", index=False)


def video_config(temporal: str, sampling: str) -> dict:
    return {
        "task": "classification", "target": "label",
        "modalities": {
            "video": {"kind": "video", "column": "clip",
                      "preprocess": {"size": 16, "color": "gray", "frames": 5, "sampling": sampling, "stride": 1},
                      "encoder": {"name": "frame_cnn", "frame": {"name": "cnn", "channels": [4], "dim": 8},
                                  "temporal": temporal, "dim": 8}},
            "sound": {"kind": "audio", "column": "clip", "preprocess": {"sample_rate": 8000, "max_seconds": 0.5},
                      "encoder": {"name": "mel_cnn", "channels": [4], "dim": 8}}},
        "fusion": {"name": "concat"},
        "train": {"epochs": 1, "batch_size": 8, "progress": False, "early_stopping": None, "num_workers": 0},
        "report": {"rows": 0},
    }


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    write_clips(folder)
    return folder


@pytest.fixture(scope="module")
def video_export(clips, tmp_path_factory, one_thread):
    run = tmp_path_factory.mktemp("video_runs") / "run"
    predictor = MultimodalPredictor.from_config(video_config("gru", "stride")).fit(clips / "m.csv", clips / "m.csv",
                                                                                   out=run)
    report = export_run(predictor, run / "export", data=clips / "m.csv")
    return predictor, run / "export", report


@pytest.mark.parametrize(("temporal", "sampling"), [
    pytest.param("mean", "uniform", marks=pytest.mark.slow),  # 13 s; gru + stride is the module's fixture
    pytest.param("transformer", "stride", marks=pytest.mark.slow),  # 14 s
])
def test_every_temporal_model_exports_and_the_runtime_reads_the_clips_as_training(clips, tmp_path, temporal, sampling,
                                                                                   onnx_exporters, monkeypatch):
    from polymodal.deploy import writers

    predictor = MultimodalPredictor.from_config(video_config(temporal, sampling)).fit(clips / "m.csv", clips / "m.csv",
                                                                                       out=tmp_path / "run")
    for traced in (True, False):  # this torch's tracing exporter, and torch.export as once it is removed
        monkeypatch.setattr(writers, "tracing_exporter", lambda traced=traced: traced)
        report = export_run(predictor, tmp_path / f"export_{traced}", data=clips / "m.csv")
        assert report.parity["runtime_rows"] == 16 and report.parity["runtime_max_abs_diff"] <= 1e-4
        assert report.parity["graph_max_abs_diff"] <= 1e-4
    assert onnx_exporters == [False, True]  # torch.export captured it too, padded clips and all


def test_a_run_that_cached_its_frame_vectors_exports_the_frame_encoder_on_the_clips(clips, tmp_path, one_thread):
    """frame.cache only spared training from running the frozen frame encoder: the graph takes the
    decoded clips (never frame vectors) with the frame encoder inside, and matches the network."""
    import json

    from polymodal.deploy.runtime import META_FILE

    config = video_config("gru", "stride")
    config["modalities"]["video"]["encoder"]["frame"].update(freeze="all", cache=True)
    config["data"] = {"cache_dir": str(tmp_path / "cache")}
    predictor = MultimodalPredictor.from_config(config).fit(clips / "m.csv", clips / "m.csv", out=tmp_path / "run")
    assert any((tmp_path / "cache" / "embeddings").iterdir())  # the frame vectors were cached
    report = export_run(predictor, tmp_path / "export", data=clips / "m.csv")
    assert report.parity["runtime_rows"] == 16 and report.parity["runtime_max_abs_diff"] <= 1e-4
    assert report.parity["graph_max_abs_diff"] <= 1e-4
    meta = json.loads((tmp_path / "export" / META_FILE).read_text())
    inputs = {i["name"]: i for i in meta["graph"]["inputs"]}
    assert inputs["video.x"]["dtype"] == "uint8" and "video.length" in inputs
    assert not any("frame_vectors" in name for name in inputs)


def test_without_the_tracing_exporter_a_video_gru_is_refused_naming_why(video_export, tmp_path, without_tracing):
    from polymodal.deploy.errors import ExportError

    with pytest.raises(ExportError, match=r"has no TorchScript-based ONNX exporter left, and torch.export cannot capture "
                                          r"FrameEncoder: a GRU over packed frame sequences \(temporal: gru\); use "
                                          r"another temporal model for ONNX, or --format torchscript"):
        export_run(video_export[0], tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_the_gru_export_checks_padded_clips_and_the_sound_track(video_export, clips):
    """Clips of 3 frames read 5 (2 padded, masked out of the packed GRU) beside clips of 6; the packed
    GRU is the one encoder torch.export cannot capture, so this graph needs the tracing exporter."""
    predictor, folder, report = video_export
    assert tracing_reason(predictor.output_network()) == "FrameEncoder: a GRU over packed frame sequences (temporal: gru)"
    assert report.parity["runtime_rows"] == 16 and report.parity["runtime_max_abs_diff"] <= 1e-4
    runtime = Runtime.load(folder)
    assert runtime.meta["modalities"]["video"]["kind"] == "video" and runtime.meta["format_version"] == 3
    feeds = runtime.transform([{"video": str(clips / "c0.mp4")}, {"video": str(clips / "c1.mp4")}])
    assert feeds["video.length"].tolist() == [3, 5] and not feeds["video.x"][0, 3:].any()


def test_clips_as_bytes_paths_npy_and_arrays_decode_as_training_does(video_export, clips):
    predictor, folder, _ = video_export
    runtime = Runtime.load(folder)
    video = runtime.features["video"]
    training = predictor.pipeline.preprocessors["video"]
    for name in ("c0.mp4", "c1.mp4"):  # 3 frames (padded to 5) and 6 frames
        path = clips / name
        expected = training.decode(str(path))
        for value in (str(path), path.read_bytes()):
            got = video.decode(value)
            np.testing.assert_array_equal(got[0], expected[0])
            assert got[1] == expected[1]
    frames = np.random.default_rng(0).integers(0, 256, (7, 20, 20), dtype=np.uint8)
    np.save(clips / "clip.npy", frames)
    expected = training.decode(str(clips / "clip.npy"))
    for value in (frames, (clips / "clip.npy").read_bytes()):
        np.testing.assert_array_equal(video.decode(value)[0], expected[0])
    sound = runtime.features["sound"].decode((clips / "c1.mp4").read_bytes())
    np.testing.assert_allclose(sound[0], predictor.pipeline.preprocessors["sound"].decode(str(clips / "c1.mp4"))[0],
                               atol=1e-6)


def test_unreadable_clips_are_refused_naming_the_modality(video_export):
    runtime = Runtime.load(video_export[1])
    with pytest.raises(RequestError, match=r"modality 'video' \(video\): not a video container .* nor a \.npy clip") as err:
        runtime.predict([{"video": png_bytes(np.zeros((4, 4), np.uint8))}])
    assert err.value.status == 415
    with pytest.raises(RequestError, match=r"modality 'video' \(video\): unreadable or corrupt video .*; truncated\? "
                                           r"a file cut short \(an mp4 whose index is written last") as err:
        runtime.predict([{"video": b"\x00\x00\x00\x20ftypisom" + b"\x00" * 40}])
    assert err.value.status == 422 and err.value.code == "corrupt_file"


def test_a_video_runs_with_torch_unimportable(video_export, clips):
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "from polymodal.deploy.runtime import Runtime\n"
        f"rt = Runtime.load({str(video_export[1])!r})\n"
        f"print(rt.predict([{{'video': {str(clips / 'c1.mp4')!r}, 'sound': {str(clips / 'c1.mp4')!r}}}]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("[0]", "[1]")


def test_the_service_takes_clips_and_sound_tracks_by_multipart_and_json(video_export, clips):
    import httpx

    from polymodal.deploy.server import create_app
    from polymodal.deploy.settings import ServeSettings

    predictor, folder, _ = video_export
    data = (clips / "c1.mp4").read_bytes()
    expected = predictor.predict_proba(pd.DataFrame({"clip": [str(clips / "c1.mp4")]})).to_numpy()[0]
    with serving(create_app(Runtime.load(folder), ServeSettings())) as url:
        meta = httpx.get(url + "metadata").json()
        assert meta["modalities"]["video"]["accept"] == ["AVI", "MP4/MOV", "MPEG-PS", "NPY", "WebM/MKV"]
        assert "MP4/MOV" in meta["modalities"]["sound"]["accept"]
        assert {k: meta["modalities"]["video"][k] for k in ("frames", "sampling", "size")} == {
            "frames": 5, "sampling": "stride", "size": 16}
        sent = httpx.post(url + "predict", files={"video": ("c1.mp4", data, "video/mp4"),
                                                  "sound": ("c1.mp4", data, "video/mp4")})
        assert sent.status_code == 200, sent.text
        probabilities = sent.json()["probabilities"]
        np.testing.assert_allclose([probabilities["0"], probabilities["1"]], expected, atol=1e-5)
        as_json = httpx.post(url + "predict", json={"video": base64.b64encode(data).decode()})
        assert as_json.status_code == 200 and as_json.json()["modalities"] == ["video"]
        wrong = httpx.post(url + "predict", files={"video": ("x.png", png_bytes(np.zeros((4, 4), np.uint8)), "image/png")})
        assert wrong.status_code == 415 and wrong.json()["error"]["field"] == "video"
        assert "accepted: AVI, MP4/MOV, MPEG-PS, NPY, WebM/MKV" in wrong.json()["error"]["message"]
        cut = httpx.post(url + "predict", files={"video": ("c.mp4", data[:200], "video/mp4")})
        assert cut.status_code == 422 and cut.json()["error"]["code"] == "corrupt_file"
        assert "polymodal-video-" not in cut.text  # FFmpeg named the server's temporary file
        explained = httpx.post(url + "explain", files={"video": ("c1.mp4", data, "video/mp4"),
                                                       "sound": ("c1.mp4", data, "video/mp4")})
        assert explained.status_code == 200 and set(explained.json()["contributions"]) == {"sound", "video"}


# a WebM's Opus track is 48 kHz: the runtime resamples it to the model's 8 kHz in numpy, within
# about 2e-2 of training's soxr (see the runtime section of docs/deployment.md); the others carry 8 kHz
@pytest.mark.parametrize(("suffix", "tolerance"), [(".webm", 2e-2), (".avi", 1e-6), (".mkv", 1e-6)])
def test_other_containers_decode_from_bytes_as_training_reads_their_files(video_export, tmp_path, suffix, tolerance):
    from polymodal.data.video_io import write_video

    predictor, folder, _ = video_export
    frames = np.zeros((6, 16, 16), np.uint8)
    frames[:, 4:12, 4:12] = np.arange(6)[:, None, None] * 40
    audio = (0.3 * np.sin(2 * np.pi * 440 * np.arange(4000) / 8000)).astype(np.float32)
    write_video(str(tmp_path / f"clip{suffix}"), frames, fps=6, audio=audio)
    runtime = Runtime.load(folder)
    data = (tmp_path / f"clip{suffix}").read_bytes()
    got, expected = runtime.features["video"].decode(data), predictor.pipeline.preprocessors["video"].decode(
        str(tmp_path / f"clip{suffix}"))
    np.testing.assert_array_equal(got[0], expected[0])
    sound = runtime.features["sound"].decode(data)[0]
    np.testing.assert_allclose(sound, predictor.pipeline.preprocessors["sound"].decode(str(tmp_path / f"clip{suffix}"))[0],
                               atol=tolerance)


def test_a_truncated_npy_clip_is_a_corrupt_file_not_a_crash(video_export):
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.zeros((6, 16, 16), np.uint8))
    with pytest.raises(RequestError, match=r"modality 'video' \(video\): not a readable \.npy clip") as err:
        Runtime.load(video_export[1]).predict([{"video": bytearray(buffer.getvalue()[:150])}])
    assert err.value.status == 422 and err.value.code == "corrupt_file"


def test_the_service_limits_clip_length_frame_size_and_sound_track_length(video_export, clips, tmp_path):
    import httpx

    from polymodal.data.video_io import write_video
    from polymodal.deploy.server import create_app
    from polymodal.deploy.settings import ServeSettings

    write_video(str(tmp_path / "silent.mp4"), np.zeros((6, 16, 16), np.uint8), fps=6)  # no sound track
    clip = (clips / "c1.mp4").read_bytes()  # 6 frames of 16 x 16, 0.5 s of sound
    settings = ServeSettings(max_video_frames=4, max_image_pixels=200, max_audio_seconds=0.2)
    with serving(create_app(Runtime.load(video_export[1]), settings)) as url:
        long = httpx.post(url + "predict", files={"video": ("c.mp4", clip, "video/mp4")}).json()["error"]
        assert long == {"code": "too_many_pixels", "field": "video",
                        "message": "modality 'video' (video): video frames are 16x16 = 256 pixels, more than the "
                                   "service's --max-image-pixels (200); refused as a possible decompression bomb"}
        sound = httpx.post(url + "predict", files={"sound": ("c.mp4", clip, "video/mp4")})
        assert sound.status_code == 413 and sound.json()["error"]["code"] == "too_long"
        assert sound.json()["error"]["message"] == ("modality 'sound' (audio): the audio track is longer than the "
                                                    "service's --max-audio-seconds (0.2 s) (the model reads "
                                                    "0.5 s of it)")
        silent = (tmp_path / "silent.mp4").read_bytes()  # the sound absent: nothing left to predict from
        alone = httpx.post(url + "predict", files={"sound": ("s.mp4", silent, "video/mp4")})
        assert alone.status_code == 400 and alone.json()["error"]["code"] == "missing_input", alone.json()
        assert alone.json()["error"]["message"] == ("no modality left to predict from: modality 'sound', the video "
                                                    "holds no audio track: read as absent")
        small = np.zeros((4, 8, 8), np.uint8)
        write_video(str(tmp_path / "small.mp4"), small, fps=6)  # within the limits, no sound track either
        both = httpx.post(url + "predict", files={"video": ("v.mp4", (tmp_path / "small.mp4").read_bytes(), "video/mp4"),
                                                  "sound": ("s.mp4", (tmp_path / "small.mp4").read_bytes(), "video/mp4")})
        alone_video = httpx.post(url + "predict", files={"video": ("v.mp4", (tmp_path / "small.mp4").read_bytes(),
                                                                   "video/mp4")})
        assert both.status_code == 200, both.json()
        assert both.json()["probabilities"] == pytest.approx(alone_video.json()["probabilities"])
        assert both.json()["absent"] == ["sound"]
        assert "modality 'sound', the video holds no audio track: read as absent" in both.json()["warnings"]
    with serving(create_app(Runtime.load(video_export[1]), ServeSettings(max_video_frames=4))) as url:
        long = httpx.post(url + "predict", files={"video": ("c.mp4", clip, "video/mp4")})
        assert long.status_code == 413 and long.json()["error"] == {
            "code": "too_long", "field": "video", "message": "modality 'video' (video): video has 6 frames, more than the "
                                                          "service's --max-video-frames (4) (the model reads 5 of them)"}
        frames = np.zeros((6, 16, 16), np.uint8)
        import io

        buffer = io.BytesIO()
        np.save(buffer, frames)
        npy = httpx.post(url + "predict", files={"video": ("c.npy", buffer.getvalue(), "application/octet-stream")})
        assert npy.status_code == 413 and "video has 6 frames, more than the service's --max-video-frames (4)" in \
            npy.json()["error"]["message"]


def test_without_pyav_a_video_export_is_refused_at_load_naming_the_package(video_export):
    script = (
        "import sys; sys.modules['av'] = None\n"
        "from polymodal.deploy.runtime import Runtime\n"
        "from polymodal.errors import MissingDependencyError\n"
        "try:\n"
        f"    Runtime.load({str(video_export[1])!r})\n"
        "except MissingDependencyError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("decoding video modality 'video' needs the optional package 'av'. Install it with: "
                                   "pip install av")


def test_a_clip_past_the_model_s_limit_is_refused_naming_its_setting(video_export, clips):
    """Without a tighter service limit, the model's own preprocess.max_frames refuses the clip."""
    import json

    from polymodal.deploy.features import VideoFeatures
    from polymodal.deploy.runtime import META_FILE

    meta = json.loads((video_export[1] / META_FILE).read_text(encoding="utf-8"))["modalities"]["video"]
    meta["preprocess"]["max_frames"] = 4
    video = VideoFeatures("video", meta)
    video.limit(max_frames=10, max_pixels=10**6)  # looser than the model's: the model's setting is named
    with pytest.raises(RequestError, match=r"video has 6 frames, more than preprocess.max_frames \(4\) \(the model "
                                           r"reads 5 of them\)") as err:
        video.decode(str(clips / "c1.mp4"))
    assert err.value.status == 413 and err.value.code == "too_long"
    assert video.decode(str(clips / "c0.mp4"))[1] == 3  # 3 frames: within the limit


def test_a_video_without_sound_is_predicted_with_its_audio_modality_absent(video_export, clips, tmp_path):
    """As training reads it: the runtime gives the row's prediction without the sound (said once
    per call), as eager prediction does."""
    from polymodal.data.video_io import write_video

    predictor, folder, _ = video_export
    write_video(str(tmp_path / "mute.mp4"), np.zeros((6, 16, 16), np.uint8), fps=6)
    runtime = Runtime.load(folder)
    rows = [{"video": str(clips / f"c{i}.mp4"), "sound": str(tmp_path / "mute.mp4")} for i in (1, 2)]
    with pytest.warns(UserWarning, match=r"^2 rows' videos hold no audio track: their audio modality 'sound' is read "
                                         r"as absent$"):
        feeds = runtime.transform(rows)
    assert feeds["sound.present"].tolist() == [False, False] and feeds["video.present"].tolist() == [True, True]
    without = runtime.outputs([{"video": row["video"]} for row in rows])
    with pytest.warns(UserWarning, match="videos hold no audio track"):
        np.testing.assert_allclose(runtime.outputs(rows), without, atol=1e-6)
    mute = str(tmp_path / "mute.mp4")  # the video and the sound share the column: a mute clip for both
    with pytest.warns(UserWarning, match=r"1 row's video holds no audio track .*: its audio modality 'sound' is read "
                                         r"as absent"):
        eager = predictor.predict_proba(pd.DataFrame({"clip": [mute]}))
    with pytest.warns(UserWarning, match="1 row's video holds no audio track"):
        served = runtime.scores(runtime.outputs([{"video": mute, "sound": mute}]))
    np.testing.assert_allclose(np.asarray(eager), served, atol=1e-4)


def test_a_path_to_a_file_of_another_type_is_refused_as_unsupported_and_an_mpeg_ts_is_read(video_export, tmp_path):
    """As training refuses it (not read as a .npy): the runtime answers 415 naming the type; an
    MPEG-TS path (a network video recorder's) decodes as training reads it."""
    runtime = Runtime.load(video_export[1])
    (tmp_path / "sound.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    with pytest.raises(RequestError, match=r"modality 'video' \(video\): file '.*sound.wav': unsupported video file "
                                           r"type '.wav'; a video cell takes a video file \(") as err:
        runtime.features["video"].decode(str(tmp_path / "sound.wav"))
    assert err.value.status == 415 and err.value.code == "unsupported_type"
    from polymodal.data.video_io import write_video

    write_video(str(tmp_path / "cam.ts"), np.stack([np.full((16, 16), 20 * i, np.uint8) for i in range(6)]), fps=10)
    predictor = video_export[0]
    np.testing.assert_array_equal(runtime.features["video"].decode(str(tmp_path / "cam.ts"))[0],
                                  predictor.pipeline.preprocessors["video"].decode(str(tmp_path / "cam.ts"))[0])


def test_the_exporters_notes_on_a_packed_gru_are_left_out_of_stderr_and_other_lines_kept(capfd):
    """torch's C++ passes print that they infer no shape for the packing ops of a packed GRU (the
    parity checks compare the graph on clips of every length): left out; any other line is kept."""
    import os

    from polymodal.deploy.writers import HARMLESS_EXPORTER_NOTES, without_cpp_notes

    with without_cpp_notes(HARMLESS_EXPORTER_NOTES):
        os.write(2, b"[W shape_type_inference.cpp:1994] Warning: The shape inference of prim::PackPadded type is "
                    b"missing, so it may result in wrong shape inference for the exported graph.\n")
        os.write(2, b"[W shape_type_inference.cpp:1994] Warning: The shape inference of prim::PadPacked type is "
                    b"missing\n")
        os.write(2, b"something else went wrong\n")
    assert capfd.readouterr().err == "something else went wrong\n"
