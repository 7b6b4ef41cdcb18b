"""Module-scoped fixtures: the tiny dataset, a model trained on it, and its ONNX export."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from polymodal import MultimodalPredictor

from .helpers import config, make_dataset


@pytest.fixture(scope="session")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, one_thread) -> dict:
    root = tmp_path_factory.mktemp("deploy_data")
    frame = make_dataset(root)
    frame.iloc[:42].to_csv(root / "train.csv", index=False)
    frame.iloc[42:].to_csv(root / "test.csv", index=False)
    return {"root": root, "frame": frame, "train": root / "train.csv", "test": root / "test.csv"}


@pytest.fixture(scope="session")
def trained(dataset, tmp_path_factory) -> tuple[MultimodalPredictor, Path]:
    run = tmp_path_factory.mktemp("deploy_runs") / "run"
    predictor = MultimodalPredictor.from_config(config()).fit(dataset["train"], dataset["test"], out=run)
    return predictor, run


@pytest.fixture(scope="session")
def exported(trained, dataset) -> tuple[Path, object]:
    from polymodal.deploy.export import export_run

    predictor, run = trained
    report = export_run(predictor, run / "export", data=dataset["test"], quantize=True)
    return run / "export", report


@pytest.fixture(scope="session")
def server(exported) -> str:
    """The exported tiny model served by uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    from polymodal.deploy.runtime import Runtime
    from polymodal.deploy.server import create_app
    from polymodal.deploy.settings import ServeSettings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(Runtime.load(exported[0]), ServeSettings(port=port))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)
