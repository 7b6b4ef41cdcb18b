"""Deployment on real data: export parity, eager vs ONNX Runtime vs int8, and a load test of the service.

A model trained on FSDD speech + MNIST images (split by speaker; ``--run``, or trained here) is
exported to ONNX with dynamic int8 quantisation; the parity check runs on held-out test rows.
Then: test accuracy of the eager predictor, of the numpy + onnxruntime runtime from raw files,
and of the int8 graph; network latency and throughput at batch 1 and 64 (eager torch, ONNX
Runtime float, int8; one thread each, preprocessed inputs); and bounded load tests of
``polymodal serve`` on loopback (``--requests`` multipart requests, image + audio, one at a time
and ``--concurrency`` at a time; batches run at once, ``--max-wait-ms 0``, and held open 5 ms)
reporting p50 / p99 latency, throughput, errors and the mean micro-batch.

    python benchmarks/deploy.py --data-root ../shared/data [--run benchmarks/out/deploy/run2]
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import fsdd_mnist_by_speaker, median_time, parser, save

from polymodal import MultimodalPredictor
from polymodal.data.manifest import read_manifest
from polymodal.deploy.export import export_run
from polymodal.deploy.parity import eager_outputs, manifest_rows, table_feeds
from polymodal.deploy.runtime import Runtime

CONFIG = {
    "task": "classification", "target": "label",
    "modalities": {
        "image": {"kind": "image", "column": "image", "preprocess": {"size": 28, "color": "gray", "normalize": "standard"},
                  "encoder": {"name": "cnn", "channels": [32, 64], "dim": 128, "dropout": 0.2}},
        "audio": {"kind": "audio", "column": "audio",
                  "preprocess": {"sample_rate": 8000, "max_seconds": 1.0, "features": "log_mel", "n_mels": 40,
                                 "frame_ms": 25, "hop_ms": 10, "normalize": "utterance"},
                  "encoder": {"name": "mel_cnn", "channels": [16, 32, 64], "dim": 128, "dropout": 0.2,
                              "frequency": "mean"}},  # the measured model
    },
    "fusion": {"name": "attention", "dim": 128},
    "head": {"name": "mlp", "hidden": [128], "dropout": 0.2},
    "train": {"epochs": 12, "batch_size": 64, "lr": 2e-3, "seed": 0, "progress": False, "modality_dropout": 0.3,
              "early_stopping": {"patience": 5}},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def load_test(url: str, bodies: list[dict[str, tuple[str, bytes, str]]], labels: list[str], requests: int,
                    concurrency: int) -> dict[str, float]:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors, correct = 0, 0

    async def one(client: httpx.AsyncClient, i: int) -> None:
        nonlocal errors, correct
        async with gate:
            start = time.perf_counter()
            response = await client.post(url + "predict", files=bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors += 1
            elif str(response.json()["prediction"]) == labels[i % len(labels)]:  # classes as JSON gives them
                correct += 1

    async with httpx.AsyncClient(timeout=60) as client:
        await one(client, 0)  # warm-up, not counted
        latencies.clear()
        correct = 0
        started = time.perf_counter()
        await asyncio.gather(*(one(client, i) for i in range(requests)))
        wall = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {"requests": requests, "concurrency": concurrency, "errors": errors, "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(round(0.99 * len(ms))) - 1)], "throughput_rps": requests / wall,
            "accuracy_%": 100 * correct / requests}


def serve_load(run: Path, max_wait_ms: float, bodies: list[dict[str, tuple[str, bytes, str]]], labels: list[str],
               requests: int, concurrency: int) -> dict[str, float]:
    """Start ``polymodal serve`` on the run's export, load-test it, stop it."""
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "polymodal.cli", "serve", str(run / "export"), "--port", str(port),
                               "--threads", "1", "--max-wait-ms", str(max_wait_ms)],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass  # not listening yet
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("the server did not start")
            time.sleep(0.5)
        load = asyncio.run(load_test(url, bodies, labels, requests, concurrency))
        health = httpx.get(url + "health").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"max_wait_ms": max_wait_ms, **load, "mean_batch": health["requests"] / max(health["batches"], 1)}


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--run", type=Path, default=None, help="a trained av-digits run (default: train one in --work)")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args()
    data = fsdd_mnist_by_speaker(args)
    run = args.run or args.work / "deploy" / "run"
    if not (run / "model.safetensors").is_file():
        MultimodalPredictor.from_config(CONFIG).fit(data / "train.csv", data / "valid.csv", out=run)
    torch.set_num_threads(1)
    predictor = MultimodalPredictor.load(run)
    test = data / "test.csv"
    rows = 200 if args.quick else 1000
    started = time.perf_counter()
    report = export_run(predictor, run / "export", data=test, rows=rows, quantize=True)
    export_seconds = time.perf_counter() - started
    q = report.quantized

    # accuracy: eager predictor, runtime from raw files, int8 graph (all on the same test rows)
    manifest = read_manifest(test).subset(np.arange(rows))
    truth = manifest.frame["label"].astype(str).tolist()
    runtime = Runtime.load(run / "export", threads=1)
    cells = manifest_rows(runtime, manifest, rows)
    eager_acc = float(np.mean([str(x) for x in predictor.predict(manifest)] == np.asarray(truth)))
    rt_pred = [lab for s in range(0, rows, 64) for lab in runtime.predict(cells[s:s + 64])]
    rt_acc = float(np.mean(np.asarray([str(x) for x in rt_pred]) == np.asarray(truth)))
    accuracy = [
        {"model": "eager (torch)", "test_accuracy_%": 100 * eager_acc},
        {"model": "ONNX Runtime, numpy preprocessing from files", "test_accuracy_%": 100 * rt_acc},
        {"model": "ONNX Runtime int8 (MatMul/Gemm weights)", "test_accuracy_%": 100 * q["accuracy_int8"]},
    ]

    # network latency and throughput on preprocessed rows
    table = predictor.encode_data(manifest, require_target=False, modalities=None)[1]
    feeds_all = table_feeds(table, np.arange(len(table)), hide=False)
    int8 = Runtime.load(run / "export", quantized=True, threads=1)
    engines = {"eager (torch)": lambda f: eager_outputs(predictor, f), "ONNX Runtime": runtime.run, "ONNX Runtime int8": int8.run}
    speed = []
    for batch in (1, 64):
        feeds = {k: v[:batch] for k, v in feeds_all.items()}
        base = None
        for name, fn in engines.items():
            fn(feeds)
            seconds, _ = median_time(lambda fn=fn, feeds=feeds: fn(feeds), max(args.repeats, 1) * 10)
            base = base or seconds
            speed.append({"engine": name, "batch": batch, "latency_ms": 1000 * seconds,
                          "throughput_rows_s": batch / seconds, "speed-up vs eager": base / seconds})
    decode_s, _ = median_time(lambda: runtime.predict_proba(cells[:64]), max(args.repeats, 1))
    speed.append({"engine": "ONNX Runtime incl. numpy decoding of the files", "batch": 64, "latency_ms": 1000 * decode_s,
                  "throughput_rows_s": 64 / decode_s, "speed-up vs eager": None})

    # bounded load tests of the service on loopback (a separate server process per batching setting):
    # a lone client (latency) and concurrent ones (throughput), batches run at once and held open 5 ms
    frame = manifest.frame.head(100)
    bodies = [{"image": ("d.png", Path(manifest.resolve(r.image)).read_bytes(), "image/png"),
               "audio": ("d.wav", Path(manifest.resolve(r.audio)).read_bytes(), "audio/wav")} for r in frame.itertuples()]
    n = 100 if args.quick else args.requests
    loads = [serve_load(run, wait, bodies, frame["label"].astype(str).tolist(), n, concurrency)
             for wait in (0.0, 5.0) for concurrency in (1, args.concurrency)]

    parity = report.parity
    notes = [
        f"export + checks took {export_seconds:.0f} s; parity on {parity['source']}: max |ONNX - eager| = "
        f"{parity['graph_max_abs_diff']:.1e}; numpy runtime from raw files vs eager predictor on "
        f"{parity['runtime_rows']} rows: {parity['runtime_max_abs_diff']:.1e} (tolerance 1e-4)",
        f"int8: {q['size_bytes'] / 1e6:.2f} MB vs {q['float_size_bytes'] / 1e6:.2f} MB; accuracy "
        f"{100 * q['accuracy']:.2f}% -> {100 * q['accuracy_int8']:.2f}% ({100 * (q['accuracy_int8'] - q['accuracy']):+.2f} "
        f"points); max logit change {q['max_abs_diff']:.3f}. Convolutions stay float (onnxruntime's ConvInteger is slower). "
        "The int8 graph runs one row at a time, as the runtime runs it (dynamic quantisation scales each call's "
        "activations: in a batch, a row's answer would depend on its neighbours), so batch 64 is 64 calls",
        "latency: median of repeated runs on preprocessed test rows, torch and onnxruntime with 1 thread each",
        f"load test: {n} multipart requests (28x28 PNG + ~0.5 s WAV) per row, 1 or {args.concurrency} concurrent, "
        f"client and server on the same {os.cpu_count()}-core machine, server with 1 onnxruntime thread; "
        "max_wait_ms 0 (the default) runs a batch as soon as the graph is free with the requests waiting; 5 holds "
        "it open 5 ms more for others to join",
    ]
    save("deploy", "Deployment: export parity, eager vs ONNX Runtime vs int8, HTTP load test (FSDD + MNIST)",
         {"accuracy": accuracy, "inference speed": speed, "HTTP load test": loads}, notes)


if __name__ == "__main__":
    main()
