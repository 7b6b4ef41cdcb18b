"""The Python face a scikit-learn or AutoGluon user reaches for: the constructor takes what
``from_config`` takes, the predictor says what it is and which classes its columns are, a missing
run is one of the library's own errors, and the package lists and types its public names."""

from __future__ import annotations

import contextlib
import inspect
from importlib import resources

import pytest
import yaml
from helpers_models import classification_config, make_dataset, multilabel_config, tabular_anomaly, write_splits

import polymodal
from polymodal import AnomalyDetector, MultimodalPredictor, PolymodalError
from polymodal.errors import ConfigError, OptionError, RunNotFoundError, SchemaMismatchError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    return write_splits(root, make_dataset(root, n=30))


def test_the_constructor_takes_a_dict_or_a_file_and_validates_it(data, tmp_path):
    config = classification_config(epochs=1)
    from_dict = MultimodalPredictor(config).fit(data["train"], data["valid"])
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    from_file = MultimodalPredictor(path).fit(data["train"], data["valid"])
    assert from_dict.predict_proba(data["test"]).equals(from_file.predict_proba(data["test"]))  # same seed
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        MultimodalPredictor({**config, "train": {"epochs": -1}})


def test_an_anomaly_config_is_pointed_at_the_detector(tmp_path):
    config = {"task": "anomaly", "modalities": {"tab": {"kind": "tabular", "columns": ["x1"]}}}
    with pytest.raises(SchemaMismatchError, match="AnomalyDetector"):
        MultimodalPredictor(config)
    assert isinstance(MultimodalPredictor.from_config(config), AnomalyDetector)
    assert isinstance(AnomalyDetector(config), AnomalyDetector)  # a dict, validated, here too
    with pytest.raises(SchemaMismatchError, match="task 'anomaly'"):
        AnomalyDetector(classification_config())


def test_repr_and_classes_say_what_the_predictor_is(data):
    predictor = MultimodalPredictor(classification_config(epochs=1))
    assert repr(predictor) == ("MultimodalPredictor(task='classification', modalities={'img': 'image', 'tab': "
                               "'tabular'}, fitted=False)")
    assert predictor.classes is None
    predictor.fit(data["train"], data["valid"])
    assert repr(predictor).endswith("fitted=True)")
    assert predictor.classes == list(predictor.predict_proba(data["test"]).columns) == ["a", "b", "c"]
    tags = MultimodalPredictor(multilabel_config(epochs=1)).fit(data["train"], data["valid"])
    assert tags.classes == list(tags.predict_proba(data["test"]).columns) == ["tag_bright", "tag_top"]


def test_loading_a_missing_run_raises_the_librarys_own_error(tmp_path):
    for path, message in ((tmp_path / "nowhere", "run folder not found"), (tmp_path, "not a polymodal run folder")):
        with pytest.raises(RunNotFoundError, match=message) as caught:
            MultimodalPredictor.load(path)
        assert isinstance(caught.value, PolymodalError) and isinstance(caught.value, FileNotFoundError)


def test_the_package_lists_and_types_its_public_names():
    for name in polymodal.__all__:
        assert name in dir(polymodal) and getattr(polymodal, name) is not None
    assert resources.files("polymodal").joinpath("py.typed").is_file()
    options = inspect.signature(MultimodalPredictor.explain).parameters
    assert {"max_rows", "samples", "seed", "output"} <= set(options)  # shown by help() and editors


def test_fit_leaves_the_callers_random_streams_and_torch_switches_as_they_were(data):
    import logging
    import random
    import warnings

    import numpy as np
    import torch

    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    expected = (np.random.rand(), random.random(), torch.rand(1).item())
    np.random.seed(123)
    random.seed(123)
    torch.manual_seed(123)
    level = logging.getLogger("lightning.pytorch").level
    fill = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(False)  # the caller's choice (a test before may have left it on)
    predictor = MultimodalPredictor(classification_config(epochs=1, deterministic=True))
    predictor.fit(data["train"], data["valid"])
    assert (np.random.rand(), random.random(), torch.rand(1).item()) == expected  # the streams go on, unreseeded
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.utils.deterministic.fill_uninitialized_memory == fill
    assert logging.getLogger("lightning.pytorch").level == level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", append=True)  # behind any filter a fit left in place
        warnings.warn("The number of training batches (1) is smaller than the logging interval", UserWarning,
                      stacklevel=1)
    assert len(caught) == 1, "the fit's filters for Lightning's chatter stay inside the fit"


def test_train_threads_bounds_torch_during_the_fit_and_is_given_back_after(data):
    import lightning as L
    import torch

    seen = []

    class Threads(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # not 1 already, whatever the machine's cores
    try:
        config = classification_config(epochs=1)
        config["train"]["threads"] = 1
        MultimodalPredictor(config).fit(data["train"], data["valid"], callbacks=[Threads()])
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_save_refuses_a_folder_holding_another_run_and_replaces_it_whole_when_told(data, tmp_path):
    from polymodal.errors import RunFolderError

    first = MultimodalPredictor(classification_config(epochs=1)).fit(data["train"], data["valid"], out=tmp_path / "a")
    assert (tmp_path / "a" / "checkpoints").is_dir() and first.run_dir == tmp_path / "a"
    other = MultimodalPredictor(classification_config(epochs=1, seed=3)).fit(data["train"], data["valid"])
    with pytest.raises(RunFolderError, match=r"already holds another run .*overwrite=True"):
        other.save(tmp_path / "a")
    assert MultimodalPredictor.load(tmp_path / "a").predict_proba(data["test"]).equals(first.predict_proba(data["test"]))
    other.save(tmp_path / "a", overwrite=True)
    assert not (tmp_path / "a" / "checkpoints").exists(), "the other run's checkpoints do not stay beside this model"
    assert MultimodalPredictor.load(tmp_path / "a").predict_proba(data["test"]).equals(other.predict_proba(data["test"]))
    other.save(tmp_path / "a")  # its own folder now: saved again freely
    first.save(tmp_path / "b")
    first.save(tmp_path / "b")
    loaded = MultimodalPredictor.load(tmp_path / "b")
    loaded.save(tmp_path / "b")  # a loaded model's own run


def test_the_ddp_launchers_variables_outlive_the_fit_so_a_second_fit_finds_its_processes(monkeypatch):
    """Lightning's launcher sets LOCAL_RANK, MASTER_PORT... in the first process and finds the
    processes it started by them in a later fit: restoring them started a stray set that hung."""
    import os

    from polymodal.training.process_state import kept_process_state

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with kept_process_state():
        os.environ["LOCAL_RANK"] = "0"
        os.environ["PL_GLOBAL_SEED"] = "7"
    assert os.environ.pop("LOCAL_RANK") == "0"
    assert os.environ.get("PL_GLOBAL_SEED") != "7", "the seeding variable is the fit's own"


def test_loading_and_inference_leave_the_callers_torch_random_stream_as_it_was(data, tmp_path):
    import torch

    MultimodalPredictor(classification_config(epochs=1)).fit(data["train"], data["valid"], out=tmp_path / "run")
    predictor = MultimodalPredictor.load(tmp_path / "run")
    calls = {"load": lambda: MultimodalPredictor.load(tmp_path / "run"),
             "predict": lambda: predictor.predict(data["test"]),
             "predict_proba": lambda: predictor.predict_proba(data["test"]),
             "predict_frame": lambda: predictor.predict_frame(data["test"]),
             "evaluate": lambda: predictor.evaluate(data["test"]),
             "explain": lambda: predictor.explain(data["test"], max_rows=4, samples=1, permutations=4, steps=2)}
    for name, call in calls.items():
        torch.manual_seed(5)
        expected = torch.rand(1)
        torch.manual_seed(5)
        call()
        assert torch.equal(torch.rand(1), expected), f"{name} moved torch's global random stream"


def _raising_at_the_first_epoch(error: BaseException):
    import lightning as L

    class Raising(L.Callback):
        def on_train_epoch_start(self, trainer, module):
            raise error

    return Raising()


@pytest.mark.parametrize("error", [RuntimeError("a callback failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_failed_refit_leaves_the_fitted_predictor_as_it_was(data, tmp_path, error):
    """A re-fit that raised kept the new preprocessing (classes u, v) beside the old network:
    predict failed on a shape mismatch, or with the same classes predicted silently worse."""
    import pandas as pd

    predictor = MultimodalPredictor(classification_config(epochs=1)).fit(data["train"], data["valid"], out=tmp_path / "a")
    before = {name: getattr(predictor, name) for name in ("config", "pipeline", "net", "history", "info", "metrics",
                                                          "last_skipped", "diagnostics", "run_dir", "valid_scores")}
    probabilities = predictor.predict_proba(data["test"])
    relabelled = {}
    for split in ("train", "valid"):
        frame = pd.read_csv(data[split])
        frame["label"] = ["u" if i % 2 else "v" for i in range(len(frame))]
        relabelled[split] = data[split].with_name(f"relabelled_{split}.csv")
        frame.to_csv(relabelled[split], index=False)
    with pytest.raises(type(error)):
        predictor.fit(relabelled["train"], relabelled["valid"], out=tmp_path / "b",
                      callbacks=[_raising_at_the_first_epoch(error)])
    assert predictor.classes == ["a", "b", "c"]
    assert predictor.predict_proba(data["test"]).equals(probabilities)
    assert [name for name, value in before.items() if getattr(predictor, name) is not value] == []  # the same objects
    assert repr(predictor).endswith("fitted=True)")
    predictor.save(tmp_path / "a")  # still its own run folder: saved again without overwrite


@pytest.mark.parametrize("error", [RuntimeError("a callback failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_first_fit_that_raised_leaves_the_predictor_unfitted(data, error):
    """Ctrl-C in a first fit left a pipeline without a network: repr said fitted=True while
    predict and save raised NotFittedError."""
    from polymodal.errors import NotFittedError

    predictor = MultimodalPredictor(classification_config(epochs=1))
    with pytest.raises(type(error)):
        predictor.fit(data["train"], data["valid"], callbacks=[_raising_at_the_first_epoch(error)])
    assert repr(predictor).endswith("fitted=False)")
    assert predictor.pipeline is None and predictor.classes is None and predictor.history.empty
    with pytest.raises(NotFittedError):
        predictor.predict(data["test"])
    predictor.fit(data["train"], data["valid"])  # and fits as a new one does
    assert predictor.classes == ["a", "b", "c"]


def test_a_failed_refit_leaves_the_anomaly_detector_as_it_was(tmp_path):
    import pandas as pd

    config = tabular_anomaly(tmp_path, {"train": 32, "valid": 20, "other": 32}, "autoencoder", epochs=1,
                             batch_size=16, progress=False)
    detector = AnomalyDetector(config).fit(tmp_path / "train.csv", tmp_path / "valid.csv")
    model, pipeline, scores = detector.model, detector.pipeline, detector.predict_frame(tmp_path / "valid.csv")
    rescaled = pd.read_csv(tmp_path / "other.csv") * 100.0  # preprocessing learned anew would score otherwise
    with pytest.raises(KeyboardInterrupt):
        detector.fit(rescaled, tmp_path / "valid.csv", callbacks=[_raising_at_the_first_epoch(KeyboardInterrupt())])
    assert detector.model is model and detector.pipeline is pipeline
    assert detector.predict_frame(tmp_path / "valid.csv").equals(scores)


def test_messages_name_the_python_arguments_in_a_call_and_the_options_in_a_command(tmp_path):
    """A notebook user told ``--set`` or ``--resume`` must translate it; a command-line user told
    ``overrides=`` or ``resume=True`` too. The same mistake is named as each gave it."""
    import pandas as pd

    from polymodal.config import load_config
    from polymodal.errors import RunFolderError, command_line
    from polymodal.resume import check_out

    config = load_config(classification_config())
    said = {}
    for interface in ("python", "command line"):
        with command_line() if interface == "command line" else contextlib.nullcontext():
            with pytest.raises(ConfigError) as bad_key:
                load_config(classification_config(), overrides={"train.epochs": 0})
            with pytest.raises(FileNotFoundError) as nothing:
                check_out(tmp_path / "new", config, resume=True)
            with pytest.raises(RunFolderError) as both:
                check_out(tmp_path / "new", config, resume=True, overwrite=True)
        said[interface] = (str(bad_key.value), str(nothing.value), str(both.value))
    python, command = said["python"], said["command line"]
    assert python[0].startswith("Invalid overrides (1 problem(s)):\n  - overrides 'train.epochs': ")
    assert command[0].startswith("Invalid --set values (1 problem(s)):\n  - --set train.epochs: ")
    assert python[1].startswith("resume=True: no checkpoint") and command[1].startswith("--resume: no checkpoint")
    assert python[2] == "resume=True continues the run in out= and overwrite=True replaces it; give one of them"
    with pytest.raises(OptionError, match=r"^task=: one of classification, .*; got 'clasification'"):
        polymodal.infer_config(pd.DataFrame({"x": range(20), "y": [0, 1] * 10}), "y", task="clasification")
    assert command[2] == "--resume continues the run in --out and --overwrite replaces it; give one of them"
