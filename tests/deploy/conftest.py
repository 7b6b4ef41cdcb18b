"""Module-scoped fixtures: the tiny dataset, a model trained on it, and its ONNX export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polymodal import MultimodalPredictor

from .helpers import config, make_dataset, serving


@pytest.fixture(scope="session")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def onnx_exporters(monkeypatch) -> list[bool]:
    """The ``dynamo`` flag of every ``torch.onnx.export`` call while the test runs: True where
    torch.export captured the graph, False where the legacy TorchScript-based exporter traced it."""
    import functools

    calls: list[bool] = []
    real = torch.onnx.export

    @functools.wraps(real)  # its signature too, which the export reads
    def spy(*args, **kwargs):
        calls.append(kwargs.get("dynamo", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", spy)
    return calls


@pytest.fixture
def without_tracing(monkeypatch) -> None:
    """As a torch that has removed the TorchScript-based ONNX exporter: torch.export captures graphs."""
    from polymodal.deploy import writers

    monkeypatch.setattr(writers, "tracing_exporter", lambda: False)


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
    from polymodal.deploy.runtime import Runtime
    from polymodal.deploy.server import create_app
    from polymodal.deploy.settings import ServeSettings

    with serving(create_app(Runtime.load(exported[0]), ServeSettings())) as url:
        yield url


@pytest.fixture(scope="session")
def late_run(tmp_path_factory, one_thread) -> tuple[MultimodalPredictor, Path]:
    """A tiny late-fusion run (two tabular modalities, some rows missing one), fitted on a
    DataFrame: it records no manifest, so its export checks synthetic arrays unless given data."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    frame = pd.DataFrame({"x1": y + rng.normal(0, 0.2, 60), "x2": y - rng.normal(0, 0.2, 60), "label": y})
    frame.loc[::7, "x1"] = np.nan  # the presence-mask path of the late fusion's weights
    frame.loc[3::7, "x2"] = np.nan
    cfg = {"task": "classification", "target": "label",
           "modalities": {"a": {"kind": "tabular", "columns": ["x1"], "encoder": {"dim": 4, "hidden": [8]}},
                          "b": {"kind": "tabular", "columns": ["x2"], "encoder": {"dim": 4, "hidden": [8]}}},
           "fusion": {"name": "late"}, "head": {"name": "mlp", "hidden": [8]},
           "train": {"epochs": 1, "batch_size": 16, "seed": 0, "progress": False, "num_workers": 0}}
    run = tmp_path_factory.mktemp("late_runs") / "run"
    predictor = MultimodalPredictor.from_config(cfg).fit(frame.iloc[:40], frame.iloc[40:], out=run)
    return predictor, run


@pytest.fixture(scope="session")
def retrieval_run(tmp_path_factory, one_thread) -> Path:
    """A tiny ``task: retrieval`` run (embeddings, no predictions: nothing to export) fitted on
    manifest files, so it records them (as ``export`` would check them)."""
    import numpy as np
    import pandas as pd

    root = tmp_path_factory.mktemp("retrieval_run")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 2))
    frame = pd.DataFrame({"a1": x[:, 0], "a2": x[:, 1], "b1": x[:, 0] + x[:, 1], "b2": x[:, 0] - x[:, 1]})
    frame.iloc[:32].to_csv(root / "train.csv", index=False)
    frame.iloc[32:].to_csv(root / "valid.csv", index=False)
    tab = {"kind": "tabular", "encoder": {"dim": 4, "hidden": [8]}}
    cfg = {"task": "retrieval", "modalities": {"a": {**tab, "columns": ["a1", "a2"]}, "b": {**tab, "columns": ["b1", "b2"]}},
           "align": {"objective": "contrastive", "dim": 4},
           "train": {"epochs": 1, "batch_size": 8, "progress": False, "num_workers": 0, "early_stopping": None},
           "report": {"rows": 0}}
    MultimodalPredictor.from_config(cfg).fit(root / "train.csv", root / "valid.csv", out=root / "run")
    return root / "run"


def anomaly_config(scorer: str) -> dict:
    """The four modalities of :func:`helpers.config` under ``task: anomaly``: class ``a`` is normal,
    ``b`` and ``c`` anomalous; ``recon_size`` divides none of the inputs' sizes (the exported pooling)."""
    cfg = {k: v for k, v in config().items() if k != "head"}
    return {**cfg, "task": "anomaly", "fusion": {"name": "concat"},
            "anomaly": {"scorer": scorer, "normal": ["a"], "latent_dim": 8, "recon_size": 50, "decoder_hidden": 16},
            "train": {**cfg["train"], "epochs": 2}}


@pytest.fixture(scope="session")
def anomaly_exported(dataset, tmp_path_factory) -> tuple[object, Path]:
    """A consistency-scored anomaly detector (a row with one modality has no score) and its export, int8 too."""
    from polymodal.anomaly import AnomalyDetector
    from polymodal.deploy.export import export_run

    run = tmp_path_factory.mktemp("anomaly_runs") / "run"
    detector = AnomalyDetector.from_config(anomaly_config("consistency")).fit(dataset["train"], dataset["test"], out=run)
    export_run(detector, run / "export", data=dataset["test"], quantize=True)
    return detector, run / "export"
