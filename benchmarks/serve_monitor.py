"""Serving an audio-visual anomaly detector on real data: export checks, served scores against the eager detector, load.

The recipe ``examples/moving_digits_anomaly`` (video + the sound track of the same ``.mp4``,
consistency scorer) is trained on ``moving-digits`` clips (MNIST digits moving across the frame,
FSDD speech; ``--run`` reuses a trained run), exported with int8 (its checks on every test clip),
and served by ``polymodal serve`` on loopback (one onnxruntime thread). Every test clip is sent
as one multipart request (the same ``.mp4`` in both fields), ``--concurrency`` at a time: the
served scores are compared with the eager detector's (relative difference, flags, AUROC per
anomaly type), with each request's latency (decoding the clip's frames and sound included).

    python benchmarks/serve_monitor.py --data-root ../shared/data [--run RUN]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from _common import parser, prepared, require_data, save
from deploy import free_port

from polymodal import MultimodalPredictor
from polymodal.deploy.export import export_run
from polymodal.metrics.anomaly import anomaly_metrics

RECIPE = Path(__file__).resolve().parent.parent / "examples" / "moving_digits_anomaly" / "config.yaml"
ANOMALIES = ("mismatched_audio", "frozen_frames", "dropped_audio")


async def send_all(url: str, clips: list[Path], concurrency: int) -> tuple[list[dict], list[float], int]:
    """POST every clip (as both modalities) to /predict, ``concurrency`` at a time: answers (in
    clip order), latencies in seconds and the count of non-200 answers."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    answers: list[dict] = [{} for _ in clips]
    latencies: list[float] = []
    errors = 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal errors
        data = clips[i].read_bytes()
        async with gate:
            start = time.perf_counter()
            response = await client.post(url + "predict", files={"video": ("c.mp4", data, "video/mp4"),
                                                                  "audio": ("c.mp4", data, "video/mp4")})
            latencies.append(time.perf_counter() - start)
        if response.status_code == 200:
            answers[i] = response.json()
        else:
            errors += 1

    async with httpx.AsyncClient(timeout=120) as client:
        await one(client, 0)  # warm-up, not counted
        latencies.clear()
        await asyncio.gather(*(one(client, i) for i in range(len(clips))))
    return answers, latencies, errors


def serve(run: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "polymodal.cli", "serve", str(run), "--port", str(port),
                               "--threads", "1"], env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(url + "health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass  # not listening yet
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            sys.exit("the server did not start")
        time.sleep(0.5)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=None, help="a trained run of the recipe (default: train one in --work)")
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    require_data(args.data_root, "fsdd", "recordings")
    data = args.work / ("moving_digits_quick" if args.quick else "moving_digits")  # as anomaly_av_digits prepares it
    sizes = dict(n_train=60, n_valid=20, test_normal=20, test_per_anomaly=20) if args.quick else \
        dict(n_train=2000, n_valid=200, test_normal=80, test_per_anomaly=80)
    prepared("moving-digits", data, args.data_root, **sizes)
    run = args.run or args.work / ("serve_monitor_quick" if args.quick else "serve_monitor") / "run"
    if not (run / "model.safetensors").is_file():
        config = yaml.safe_load(RECIPE.read_text(encoding="utf-8"))
        config["train"].update(epochs=3 if args.quick else config["train"]["epochs"], progress=False)
        MultimodalPredictor.from_config(config).fit(data / "train.csv", data / "valid.csv", out=run)
    detector = MultimodalPredictor.load(run)
    test = data / "test.csv"
    frame = pd.read_csv(test)
    started = time.perf_counter()
    report = export_run(detector, run / "export", data=test, rows=len(frame), quantize=True)
    export_seconds = time.perf_counter() - started
    eager = detector.predict_frame(test)
    labels = frame["label"].astype(str).to_numpy()

    server, url = serve(run)
    try:
        clips = [data / c for c in frame["video"]]
        started = time.perf_counter()
        answers, latencies, errors = asyncio.run(send_all(url, clips, args.concurrency))
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    answered = np.asarray([bool(a) for a in answers])  # a failed request is counted in errors, compared nowhere
    served = np.asarray([np.nan if a.get("score") is None else a["score"] for a in answers], np.float64)
    flags = np.asarray([bool(a.get("flag")) for a in answers])
    eager_scores = eager["score"].to_numpy(np.float64)
    relative = (np.abs(served - eager_scores) / np.maximum(1.0, np.abs(eager_scores)))[answered]
    unscored_apart = int(np.sum((np.isnan(served) != np.isnan(eager_scores))[answered]))  # one side scored

    def auroc(scores: np.ndarray, anomaly: str | None) -> float:
        rows = (labels == "normal") | (labels == anomaly if anomaly else labels != "normal")
        return anomaly_metrics(scores[rows], (labels[rows] != "normal").astype(int))["auroc"]

    agreement = [{"scores from": name, **{f"AUROC {a}": round(auroc(s, a), 4) for a in ANOMALIES},
                  "AUROC all": round(auroc(s, None), 4)} for name, s in (("eager detector", eager_scores),
                                                                         ("served (HTTP)", served))]
    ms = sorted(1000 * x for x in latencies)
    load = {"requests": len(clips), "concurrency": args.concurrency, "errors": errors,
            "p50_ms": round(statistics.median(ms), 1), "p99_ms": round(ms[min(len(ms) - 1, round(0.99 * len(ms)) - 1)], 1),
            "throughput_rps": round(len(clips) / wall, 1),
            "max |served - eager| / max(1, |eager|)": f"{np.nanmax(relative):.1e}",
            "same flag as eager %": round(100 * float(np.mean((flags == eager["flag"].to_numpy())[answered])), 2),
            "scored on one side only": unscored_apart}
    q, parity = report.quantized, report.parity
    notes = [
        f"export + checks on all {len(frame)} test clips took {export_seconds:.0f} s: exported vs eager scores "
        f"{parity['graph_max_abs_diff']:.1e} (relative), numpy/PyAV runtime from the files vs eager "
        f"{parity['runtime_max_abs_diff']:.1e}; int8 {q['size_bytes'] / 1e6:.2f} MB vs {q['float_size_bytes'] / 1e6:.2f} MB, "
        f"the same flag on {100 * q['flag_agreement']:.1f}% of the clips, AUROC {q['auroc']:.4f} -> {q['auroc_int8']:.4f}",
        f"served: the float graph, one onnxruntime thread; {len(clips)} multipart requests, each one 48x48 clip of 16 "
        f"frames with its AAC sound track ({clips[0].stat().st_size / 1e3:.0f} kB) sent as both modalities, "
        f"{args.concurrency} at a time; client and server on the same {os.cpu_count()}-core machine",
        "the run: examples/moving_digits_anomaly/config.yaml as written (seed 0)",
    ]
    save("serve_monitor", "Serving an audio-visual anomaly detector (moving digits: video + sound track, consistency)",
         {"scores": agreement, "HTTP load test": [load]}, notes)


if __name__ == "__main__":
    main()
