"""Transfer recipes end to end through ``MultimodalPredictor.fit``: domain adaptation and
semi-supervised learning from an unlabelled manifest, prototypical networks with a support set
at prediction time, cross-modal distillation, multi-task heads and gradual unfreezing.

Data: the tiny three-class image + signal + tabular set of ``helpers_models``; the unlabelled
(target) manifest is its test rows without labels, with every tabular ``x1`` shifted (a change
in one modality only).
"""

from __future__ import annotations

import copy

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from helpers_models import TABULAR, classification_config, make_dataset, write_splits

from polymodal import MultimodalPredictor
from polymodal.config.transfer import CdanConfig, CoralConfig, DannConfig, MmdConfig
from polymodal.data.dataset import collate
from polymodal.errors import ConfigError, ManifestError, OptionError, SchemaMismatchError
from polymodal.training.adaptation import build_domain_term
from polymodal.training.finetune import trainable_blocks
from polymodal.training.semi import FixMatchTerm
from polymodal.training.terms import StepContext
from polymodal.training.unlabeled import forward_with_unlabeled


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    frame = make_dataset(root, n=60)
    paths = write_splits(root, frame)
    target = pd.read_csv(paths["test"]).drop(columns="label")
    target["x1"] = target["x1"] + 3.0
    paths["unlabeled"] = root / "unlabeled.csv"
    target.to_csv(paths["unlabeled"], index=False)
    return {"root": root, **paths, "n_unlabeled": len(target)}


def config(transfer: dict | None = None, **train) -> dict:
    cfg = classification_config(**{"epochs": 2, **train})
    cfg["transfer"] = transfer
    return cfg


LOSS_COLUMN = {"dann": "train_domain_loss", "cdan": "train_domain_loss", "mmd": "train_domain_loss",
               "coral": "train_domain_loss", "pseudo_label": "train_pseudo_loss", "fixmatch": "train_fixmatch_loss"}


@pytest.mark.parametrize("method", sorted(LOSS_COLUMN))
def test_unlabelled_methods_train_on_the_target_rows(data, method):
    extra = {"threshold": 0.0} if method in ("pseudo_label", "fixmatch") else {}
    pred = MultimodalPredictor.from_config(config({"method": method, **extra}))
    pred.fit(data["train"], data["valid"], unlabeled=data["unlabeled"])
    assert pred.info["transfer"] == method and pred.info["unlabeled_rows"] == data["n_unlabeled"]
    losses = pred.history[LOSS_COLUMN[method]].to_numpy()
    assert np.isfinite(losses).all() and (losses > 0).all()  # threshold 0: every unlabelled row counts
    if method in ("dann", "cdan"):
        assert 0.0 <= pred.history["train_domain_accuracy"].min() <= 1.0
    assert pred.evaluate(data["test"])["rows"] == 12


def test_unlabelled_data_without_a_method_that_uses_it_is_refused(data):
    with pytest.raises(OptionError, match=r"^unlabeled=: unlabelled data was given, but no "
                                          "transfer method is configured; set transfer.method to one that does: dann"):
        MultimodalPredictor.from_config(config()).fit(data["train"], data["valid"], unlabeled=data["unlabeled"])


@pytest.mark.parametrize("transfer, key", [({"method": "coral"}, "transfer.unlabeled"),
                                           ([{"method": "coral"}], "transfer.0.unlabeled")])
def test_a_domain_method_without_unlabelled_data_is_refused(data, transfer, key):
    with pytest.raises(ConfigError, match=f"{key}: method 'coral'"):
        MultimodalPredictor.from_config(config(transfer)).fit(data["train"], data["valid"])



def test_a_domain_method_needs_two_target_rows_per_step(data):
    one = data["root"] / "one.csv"  # beside the files it names
    pd.read_csv(data["unlabeled"]).head(1).to_csv(one, index=False)
    with pytest.raises(ManifestError, match=r"one.csv: method 'mmd' compares [\s\S]* at least 2 unlabelled rows; got 1"):
        MultimodalPredictor.from_config(config({"method": "mmd"})).fit(data["train"], data["valid"], unlabeled=one)
    with pytest.raises(ConfigError, match=r"transfer.unlabeled_batch_size: domain adaptation \('dann'\) .* got 1"):
        MultimodalPredictor.from_config(config({"method": "dann", "unlabeled_batch_size": 1}))
    with pytest.raises(ConfigError, match=r"train.batch_size: domain adaptation \('coral'\)"):
        MultimodalPredictor.from_config(config({"method": "coral"}, batch_size=1))
    MultimodalPredictor.from_config(config({"method": "pseudo_label"}, batch_size=1))  # one row per step is fine


def test_transfer_unlabeled_in_the_config_is_used_without_fit_argument(data):
    cfg = config({"method": "mmd", "unlabeled": str(data["unlabeled"])}, epochs=1)
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"])
    assert pred.info["unlabeled_rows"] == data["n_unlabeled"]


@pytest.mark.parametrize("method", ["cdan", "dann", "mmd", "coral"])
def test_adapting_one_modality_sends_gradients_to_its_encoder_only(data, method):
    """``on: [tab]``: the domain loss reaches the tabular encoder and leaves the image encoder alone."""
    pred = MultimodalPredictor.from_config(config(epochs=1)).fit(data["train"], data["valid"])
    spec = {"cdan": CdanConfig, "dann": DannConfig, "mmd": MmdConfig, "coral": CoralConfig}[method](on=["tab"])
    net = pred.net.train()
    term = build_domain_term(spec, net, n_classes=3)
    assert set(term.losses) == {"tab"}
    source = collate([pred.pipeline.dataset(pred.pipeline.encode(pred.pipeline.read(data["train"],
                                                                                   require_target=True)))[i]
                      for i in range(16)])
    target_m = pred.pipeline.read(data["unlabeled"], require_target=False)
    target = collate([pred.pipeline.dataset(pred.pipeline.encode(target_m), None)[i] for i in range(12)])
    out, target, target_out = forward_with_unlabeled(net, source["inputs"], source["present"], target, [term])
    ctx = StepContext(None, source, source["present"], out, target, 1.0, target_out)
    net.zero_grad()
    term(ctx).loss.backward()
    tab_grads = [p.grad for p in net.encoders["tab"].parameters() if p.grad is not None]
    assert tab_grads and any(float(g.abs().sum()) > 0 for g in tab_grads)
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in net.encoders["img"].parameters())


def test_the_fused_domain_loss_leaves_out_rows_modality_dropout_hid_a_modality_of(data):
    """A dropped row reads the learned missing-embedding, which no target row does: compared, it
    would be a domain gap of the dropout's making. Per-modality adaptation reads presence after
    dropout, so those rows drop out there too."""
    from polymodal.training.adaptation import domain_features

    pred = MultimodalPredictor.from_config(config(epochs=1)).fit(data["train"], data["valid"])
    net = pred.net.eval()
    pipeline = pred.pipeline
    source = collate([pipeline.dataset(pipeline.encode(pipeline.read(data["train"], require_target=True)))[i]
                      for i in range(16)])
    target = collate([pipeline.dataset(pipeline.encode(pipeline.read(data["unlabeled"], require_target=False)),
                                       None)[i] for i in range(12)])
    hidden = {name: mask.clone() for name, mask in source["present"].items()}
    hidden["img"][:6] = False  # modality dropout hid the image of rows 0-5
    whole = torch.ones(16, dtype=torch.bool)
    whole[:6] = ~source["present"]["img"][:6]  # a row without its image anyway was left as it was
    assert whole.sum() < 16
    term = build_domain_term(CoralConfig(), net, n_classes=3)
    with torch.no_grad():
        out, unlabeled, target_out = forward_with_unlabeled(net, source["inputs"], hidden, target, [term])
        ctx = StepContext(None, source, hidden, out, unlabeled, 1.0, target_out)
        src, tgt, src_logits, _ = domain_features(ctx, "fused", slice(0, 3))
        assert torch.equal(src, out.fused.pooled[whole]) and torch.equal(src_logits, out.outputs[whole, :3])
        assert tgt.shape[0] == 12
        undropped = StepContext(None, source, source["present"], out, unlabeled, 1.0, target_out)
        assert domain_features(undropped, "fused", slice(0, 3))[0].shape[0] == 16


def test_late_fusion_has_no_fused_representation_to_adapt_or_match():
    """Its modalities meet as predictions: on: fused and feature matching are refused by key, the
    per-modality and prediction-only forms accepted."""
    late = config({"method": "dann"}) | {"fusion": {"name": "late"}}
    with pytest.raises(ConfigError, match=r"transfer.on: 'fused' adapts the fused representation, and fusion 'late' "
                                          r"has none .*\(on: \['img', 'tab'\]\)"):
        MultimodalPredictor.from_config(late)
    MultimodalPredictor.from_config(late | {"transfer": {"method": "dann", "on": ["img"]}})
    distill = late | {"transfer": {"method": "distill", "teacher": "runs/teacher"}}
    with pytest.raises(ConfigError, match=r"transfer.feature_weight: matches the student's fused representation"):
        MultimodalPredictor.from_config(distill)


def test_unknown_modality_to_adapt_is_a_config_error():
    with pytest.raises(ConfigError, match="transfer.on"):
        MultimodalPredictor.from_config(config({"method": "coral", "on": ["audio"]}))


# -- several methods in one run -------------------------------------------------------------------
def test_a_domain_method_and_fixmatch_train_together_and_the_run_reloads(data, tmp_path):
    cfg = config([{"method": "cdan"}, {"method": "fixmatch", "threshold": 0.0}])
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], unlabeled=data["unlabeled"])
    assert pred.info["transfer"] == "cdan+fixmatch" and pred.info["unlabeled_rows"] == data["n_unlabeled"]
    for column in ("train_domain_loss", "train_fixmatch_loss"):
        losses = pred.history[column].to_numpy()
        assert np.isfinite(losses).all() and (losses > 0).all()
    loaded = MultimodalPredictor.load(pred.save(tmp_path / "run"))
    assert [m.method for m in loaded.config.transfers] == ["cdan", "fixmatch"]
    assert (loaded.predict(data["test"]) == pred.predict(data["test"])).all()


@pytest.mark.parametrize("method", ["dann", "fixmatch"])
def test_unlabelled_rows_of_a_cached_frozen_encoder_are_embedded_like_the_labelled_ones(data, method):
    """``cache: true`` replaces the labelled rows' images by stored encoder outputs; the unlabelled
    rows must be embedded too (FixMatch's strong view copies the stored outputs as they are)."""
    cfg = config({"method": method, **({"threshold": 0.0} if method == "fixmatch" else {})}, epochs=1)
    cfg["modalities"]["img"]["encoder"].update({"freeze": "all", "cache": True})
    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], unlabeled=data["unlabeled"])
    losses = pred.history[LOSS_COLUMN[method]].to_numpy()
    assert np.isfinite(losses).all() and (losses > 0).all()
    frozen = sum(p.numel() for p in pred.net.encoders["img"].parameters() if not p.requires_grad)
    assert frozen > 0 and pred.info["trainable_parameters"] == pred.info["parameters"] - frozen


@pytest.mark.parametrize("on", ["fused", ["img"]])
def test_a_domain_term_reads_the_unlabelled_rows_not_the_views_fixmatch_appends(data, on):
    """With FixMatch beside it, the domain loss compares the source batch with the target rows as
    loaded: the same value as without FixMatch (eval mode, so batch norm does not mix the rows)."""
    pred = MultimodalPredictor.from_config(config(epochs=1)).fit(data["train"], data["valid"])
    net = pred.net.eval()
    pipeline = pred.pipeline
    source_table = pipeline.encode(pipeline.read(data["train"], require_target=True))
    source = collate([pipeline.dataset(source_table)[i] for i in range(16)])
    target_table = pipeline.encode(pipeline.read(data["unlabeled"], require_target=False))
    target = collate([pipeline.dataset(target_table, None)[i] for i in range(12)])
    domain = build_domain_term(CoralConfig(on=on), net, n_classes=3)
    fixmatch = FixMatchTerm({"img": "image", "sig": "signal", "tab": "tabular"}, 0.0, 1.0, 1.0, 0.25, slice(0, 3))

    def domain_loss(terms: list) -> tuple[torch.Tensor, dict]:
        out, unlabeled, target_out = forward_with_unlabeled(net, source["inputs"], source["present"], target, terms)
        ctx = StepContext(None, source, source["present"], out, unlabeled, 1.0, target_out)
        return domain(ctx).loss, unlabeled

    with torch.no_grad():
        alone, plain = domain_loss([domain])
        combined, prepared = domain_loss([domain, fixmatch])
    assert plain["views"] == {"rows": slice(0, 12)}
    assert prepared["views"] == {"rows": slice(0, 12), "strong": slice(12, 24)}
    assert float(alone) > 0 and torch.allclose(alone, combined)


# -- few-shot -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def protonet(data) -> MultimodalPredictor:
    cfg = config({"method": "protonet", "shots": 3, "queries": 4, "dim": 16}, epochs=4)
    return MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"])


def test_prototypical_network_classifies_the_test_rows(protonet, data):
    assert protonet.evaluate(data["test"])["accuracy"] >= 0.75


def test_support_set_brings_its_own_class_names_and_the_model_is_restored(protonet, data):
    support = pd.read_csv(data["valid"])
    support["label"] = support["label"].map({"a": "low", "b": "mid", "c": "high"})
    support_path = data["root"] / "support_renamed.csv"
    support.to_csv(support_path, index=False)
    before = protonet.predict(data["test"])
    renamed = protonet.predict(data["test"], support=support_path)
    assert set(renamed) <= {"low", "mid", "high"}
    truth = pd.read_csv(data["test"])["label"].map({"a": "low", "b": "mid", "c": "high"}).to_numpy()
    assert (renamed == truth).mean() >= 0.75
    assert (protonet.predict(data["test"]) == before).all()  # own prototypes and classes are back
    test = pd.read_csv(data["test"])
    test["label"] = test["label"].map({"a": "low", "b": "mid", "c": "high"})
    test.to_csv(data["root"] / "test_renamed.csv", index=False)
    scores = protonet.evaluate(data["root"] / "test_renamed.csv", support=support_path, by="label")
    assert scores["classes"] == ["high", "low", "mid"]  # the support set's classes score the queries
    assert scores["accuracy"] == pytest.approx((renamed == truth).mean())
    assert set(scores["by"]["label"]) == {"high", "low", "mid"} and scores["by"]["label"]["low"]["classes"] == \
        ["high", "low", "mid"]


def test_new_classes_without_a_support_set_are_refused_saying_how_a_few_shot_model_takes_them(protonet, data,
                                                                                                 tmp_path):
    test = pd.read_csv(data["test"]).assign(label=lambda f: f["label"].map({"a": "low", "b": "mid", "c": "high"}))
    test.to_csv(data["root"] / "test_new_classes.csv", index=False)  # beside the images it names
    loaded = MultimodalPredictor.load(protonet.save(tmp_path / "run"))
    for model in (protonet, loaded):
        with pytest.raises(SchemaMismatchError, match="was not seen in training \\(a few-shot model: it classifies "
                                                      "classes it never trained on given a support set .*--support "
                                                      "SUPPORT.csv, support= in Python\\)"):
            model.evaluate(data["root"] / "test_new_classes.csv")
    cfg = config({"method": "protonet", "shots": 3, "queries": 4, "dim": 16}, epochs=1)
    with pytest.raises(SchemaMismatchError) as fitting:  # train takes no support set: no word of one there
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["root"] / "test_new_classes.csv")
    assert "was not seen in training" in str(fitting.value) and "support" not in str(fitting.value)


def test_a_saved_prototypical_network_predicts_the_same_with_and_without_support(protonet, data, tmp_path):
    loaded = MultimodalPredictor.load(protonet.save(tmp_path / "run"))
    assert (loaded.predict(data["test"]) == protonet.predict(data["test"])).all()
    assert (loaded.predict(data["test"], support=data["valid"]) ==
            protonet.predict(data["test"], support=data["valid"])).all()


def test_a_support_set_is_embedded_with_the_modalities_the_queries_have(protonet, data):
    import warnings

    from polymodal.config.modalities import modality_columns

    alone = protonet.config.modality_names[0]
    trimmed = data["root"] / f"support_{alone}_only.csv"
    pd.read_csv(data["valid"])[[*modality_columns(protonet.config.modalities[alone]), "label"]].to_csv(trimmed,
                                                                                                      index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # modalities= chosen: no warning about the support set's other columns
        chosen = protonet.predict_proba(data["test"], modalities=[alone], support=data["valid"])
    pd.testing.assert_frame_equal(chosen, protonet.predict_proba(data["test"], modalities=[alone], support=trimmed))
    full = protonet.predict_proba(data["test"], support=data["valid"])
    assert not np.allclose(chosen.to_numpy(), full.to_numpy())  # the subset differs from all modalities
    queries = data["root"] / f"test_{alone}_only.csv"  # queries whose manifest holds one modality: the same
    columns = modality_columns(protonet.config.modalities[alone])
    test = pd.read_csv(data["test"])
    held = test[columns].notna().any(axis=1).to_numpy()
    test.loc[held, [*columns, "label"]].to_csv(queries, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the queries' absent columns are warned about, as without support
        implied = protonet.predict_proba(queries, support=data["valid"])
    np.testing.assert_allclose(implied.to_numpy(), chosen.to_numpy()[held], atol=1e-6)


def test_a_few_shot_prediction_is_explained_over_the_support_sets_classes(protonet, data, tmp_path):
    from helpers_cli import invoke

    support = pd.read_csv(data["valid"])
    support["label"] = support["label"].map({"a": "low", "b": "mid", "c": "high"})
    support_path = data["root"] / "support_named.csv"
    support.to_csv(support_path, index=False)
    queries = data["root"] / "test_named.csv"  # labelled with the support set's names, as queries of its classes
    pd.read_csv(data["test"]).assign(label=lambda f: f["label"].map({"a": "low", "b": "mid", "c": "high"})).to_csv(
        queries, index=False)
    explained = protonet.explain(queries, samples=0, support=support_path)
    assert set(explained.outputs) == {"low", "mid", "high"}
    assert explained.importance["accuracy_all"].iloc[0] >= 0.75  # scored against the support classes
    predicted = protonet.predict(queries, support=support_path)
    assert explained.values["explained"].tolist() == predicted.tolist()  # each row's predicted support class
    assert set(protonet.explain(data["test"], samples=0).outputs) == {"a", "b", "c"}  # its own classes after
    run = protonet.save(tmp_path / "run")
    result = invoke("explain", run, "--data", queries, "--support", support_path, "--output", "mid",
                    "--samples", "0")
    assert result.exit_code == 0, result.output
    assert "probability of class 'mid'" in " ".join(result.stdout.split())


def test_support_set_on_a_model_without_prototypes_is_refused(data):
    pred = MultimodalPredictor.from_config(config(epochs=1)).fit(data["train"], data["valid"])
    with pytest.raises(SchemaMismatchError, match="protonet"):
        pred.predict(data["test"], support=data["valid"])


# -- distillation ---------------------------------------------------------------------------------
def test_a_two_modality_teacher_teaches_a_tabular_only_student(data, tmp_path):
    teacher = MultimodalPredictor.from_config(config(epochs=3)).fit(data["train"], data["valid"], out=tmp_path / "t")
    student_cfg = config({"method": "distill", "teacher": str(tmp_path / "t"), "temperature": 2.0}, epochs=2)
    student_cfg["modalities"] = {"tab": copy.deepcopy(TABULAR)}
    student = MultimodalPredictor.from_config(student_cfg).fit(data["train"], data["valid"])
    assert student.info["teacher"] == str(tmp_path / "t")
    kl = student.history["train_distill_loss"].to_numpy()
    assert np.isfinite(kl).all() and kl[-1] < kl[0]  # the student moves towards the teacher
    assert student.config.modality_names == ["tab"] and teacher.config.modality_names == ["img", "tab"]


def test_given_unlabelled_pairs_the_teacher_teaches_them_too(data, tmp_path, monkeypatch):
    """With --unlabeled, every step's distillation covers the labelled batch and the unlabelled
    one (the teacher's outputs on the unlabelled rows are their targets); the tests around it
    train without any."""
    from polymodal.models.objectives.distill import DistillLoss

    teacher = MultimodalPredictor.from_config(config(epochs=2)).fit(data["train"], data["valid"], out=tmp_path / "t")
    frame = pd.read_csv(data["train"])
    labelled, unlabelled = data["root"] / "few.csv", data["root"] / "pairs.csv"
    frame.groupby("label").head(2).to_csv(labelled, index=False)  # 6 labelled rows
    frame.drop(columns="label").to_csv(unlabelled, index=False)  # 36 pairs nobody labelled
    student_cfg = config({"method": "distill", "teacher": str(tmp_path / "t")}, epochs=1, batch_size=4)
    student_cfg["modalities"] = {"tab": copy.deepcopy(TABULAR)}
    rows: list[int] = []
    forward = DistillLoss.forward
    monkeypatch.setattr(DistillLoss, "forward", lambda self, logits, *rest: (rows.append(len(logits)),
                                                                             forward(self, logits, *rest))[1])
    student = MultimodalPredictor.from_config(student_cfg).fit(labelled, data["valid"], unlabeled=unlabelled)
    assert student.info["unlabeled_rows"] == 36 and student.info["teacher"] == str(tmp_path / "t")
    assert rows == [8] * 9  # 9 steps (the 36 pairs in batches of 4): 4 labelled rows (cycled) + 4 pairs each
    assert np.isfinite(student.history["train_distill_loss"].to_numpy()).all()
    assert teacher.config.modality_names == ["img", "tab"]


def test_a_multi_task_teacher_teaches_its_main_task(data, tmp_path):
    teacher_cfg = config(epochs=1)
    teacher_cfg["tasks"] = {"level": {"task": "regression", "target": "y"}}  # 3 class logits + 1 value
    MultimodalPredictor.from_config(teacher_cfg).fit(data["train"], data["valid"], out=tmp_path / "t")
    student_cfg = config({"method": "distill", "teacher": str(tmp_path / "t")}, epochs=1)
    student_cfg["modalities"] = {"tab": copy.deepcopy(TABULAR)}
    student = MultimodalPredictor.from_config(student_cfg).fit(data["train"], data["valid"])
    assert np.isfinite(student.history["train_distill_loss"].to_numpy()).all()


def test_a_teacher_with_other_classes_is_refused(data, tmp_path):
    frame = pd.read_csv(data["train"])
    frame["label"] = frame["label"].replace({"c": "z"})
    other = data["root"] / "other_classes.csv"
    frame.to_csv(other, index=False)
    MultimodalPredictor.from_config(config(epochs=1)).fit(other, other, out=tmp_path / "t")
    cfg = config({"method": "distill", "teacher": str(tmp_path / "t")}, epochs=1)
    with pytest.raises(SchemaMismatchError, match="predicts classes"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"])



def test_a_teacher_that_is_not_there_is_named_by_its_key_before_any_data_is_read(data, tmp_path, monkeypatch):
    cfg = config({"method": "distill", "teacher": str(tmp_path / "no_such_run")}, epochs=1)
    from polymodal.data.pipeline import DataPipeline

    monkeypatch.setattr(DataPipeline, "read", lambda *a, **k: pytest.fail("data was read"))
    with pytest.raises(ConfigError, match=f"transfer.teacher: not found: {tmp_path / 'no_such_run'}"):
        MultimodalPredictor.from_config(cfg).fit(data["train"])

# -- multi-task -----------------------------------------------------------------------------------
@pytest.mark.parametrize("weighting", ["fixed", "uncertainty"])
def test_further_tasks_get_their_own_heads_metrics_and_columns(data, weighting, tmp_path):
    cfg = config(epochs=5)
    cfg["tasks"] = {"bright": {"task": "classification", "target": "tag_bright"},
                    "level": {"task": "regression", "target": "y"}}
    cfg["loss"] = {"task_weighting": weighting}
    if weighting == "fixed":
        cfg["tasks"]["level"]["weight"] = 0.5
    learned = {}

    class _LogVars(L.Callback):
        def on_train_end(self, trainer, module):
            log_vars = module.loss.log_vars
            learned["log_vars"] = None if log_vars is None else log_vars.detach().clone()

    pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], callbacks=[_LogVars()])
    scores = pred.evaluate(data["test"])
    assert {"accuracy", "bright/accuracy", "level/rmse"} <= set(scores)
    assert scores["accuracy"] >= 0.5  # chance: 1/3
    if weighting == "fixed":
        assert learned["log_vars"] is None
    else:  # one learned log-variance per task (main, bright, level), moved away from 0 by training
        assert learned["log_vars"].shape == (3,) and float(learned["log_vars"].abs().min()) > 0
    history = pred.history  # early stopping and the kept epoch watch the main task's own loss
    main = [c for c in history.columns if c.startswith("val_") and c.endswith("/loss") and
            not c.startswith(("val_bright/", "val_level/"))]
    assert len(main) == 1 and {"val_bright/loss", "val_level/loss", "val_total_loss"} <= set(history.columns)
    np.testing.assert_allclose(history["val_loss"], history[main[0]], rtol=1e-5)
    assert (history["val_total_loss"] - history["val_loss"]).abs().min() > 1e-3
    assert "error" not in pred.diagnostics and pred.diagnostics.get("importance"), "the report explains the main task"
    explanation = pred.explain(data["test"], samples=1)
    assert len(explanation.labels) == len(explanation.values)
    assert set(explanation.labels) <= set(pred.pipeline.targets.classes)
    frame = pred.predict_frame(data["test"])
    assert {"bright_prediction", "level_pred_y"} <= set(frame.columns)
    assert set(frame["bright_prediction"]) <= {0, 1}
    pred.save(tmp_path / "run")  # its config.yaml spells out every default and loads back (uncertainty once did not)
    pd.testing.assert_frame_equal(MultimodalPredictor.load(tmp_path / "run").predict_frame(data["test"]), frame)
    if weighting == "fixed":  # rows that cannot score a further task: the others are still scored
        test = pd.read_csv(data["test"])
        test["image"] = [str(data["root"] / p) if isinstance(p, str) else p for p in test["image"]]
        without = test.drop(columns=["y"])
        without.loc[0, "tag_bright"] = 7  # a class that task never saw, beside the other task's missing column
        with pytest.warns(UserWarning) as caught:
            partial = pred.evaluate(without)
        said = [str(w.message) for w in caught if str(w.message).startswith("tasks.")]
        assert said == ["tasks.bright: DataFrame row 0: label 7 in column 'tag_bright' was not seen in training; "
                        "known labels: [0, 1]; that row is left out of its metrics (the other rows and tasks are "
                        "scored)", f"tasks.level is not scored on DataFrame (the other tasks are): target column 'y' "
                        f"is not in DataFrame (columns: {list(without.columns)})"]
        assert partial["accuracy"] == scores["accuracy"] and not any(k.startswith("level/") for k in partial)
        assert partial["rows"] == len(test) and partial["bright/rows"] == len(test) - 1  # the other rows: scored
        kept = test.drop(index=0)
        assert partial["bright/accuracy"] == pytest.approx(pred.evaluate(kept)["bright/accuracy"])
        with pytest.raises(ManifestError, match="target column 'label'"):  # the main task's: still an error
            pred.evaluate(test.drop(columns=["label"]))


def test_a_test_manifest_with_a_class_a_further_task_never_saw_trains_and_leaves_those_rows_unscored(data, tmp_path):
    """train --test checked every task's labels before the epochs and refused a new speaker of a
    further task; the evaluation after them leaves that row out of the task's metrics, with a
    warning, and scores the task on the others."""
    cfg = config(epochs=1)
    cfg["tasks"] = {"bright": {"task": "classification", "target": "tag_bright"}}
    test = pd.read_csv(data["test"])
    test["image"] = [str(data["root"] / p) if isinstance(p, str) else p for p in test["image"]]
    test.loc[0, "tag_bright"] = 7  # a class that task never saw
    with pytest.warns(UserWarning, match=r"tasks.bright: DataFrame row 0: label 7 in column 'tag_bright' was not seen "
                                         r"in training; known labels: \[0, 1\]; that row is left out of its metrics"):
        pred = MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], test=test)
    assert "accuracy" in pred.metrics["test"] and pred.metrics["test"]["bright/rows"] == len(test) - 1
    assert "bright/accuracy" in pred.metrics["test"]
    test.loc[0, "label"] = "never seen"  # the main task's: refused before the epochs, as ever
    with pytest.raises(SchemaMismatchError, match="label 'never seen' in column 'label' was not seen in training"):
        MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], test=test)


# -- gradual unfreezing ---------------------------------------------------------------------------
def test_trainable_blocks_follow_the_schedule():
    from polymodal.config.finetune import UnfreezeConfig

    schedule = UnfreezeConfig(start=1, every=2, blocks=1)
    assert [trainable_blocks("all", schedule, e, 4) for e in range(7)] == [0, 1, 1, 2, 2, 3, 3]
    assert [trainable_blocks(1, schedule, e, 3) for e in range(6)] == [1, 2, 2, 3, 3, 3]


class _CountTrainable(L.Callback):
    def __init__(self):
        self.counts: list[int] = []

    def on_train_epoch_start(self, trainer, module):  # runs after the unfreezing callback's
        encoder = module.net.encoders["img"]
        self.counts.append(sum(p.numel() for p in encoder.parameters() if p.requires_grad))


def test_gradual_unfreezing_trains_more_blocks_each_epoch_and_never_the_first(data, capsys):
    cfg = config(epochs=3, progress=True)  # progress: it says when blocks join
    cfg["modalities"]["img"]["encoder"] = {"name": "cnn", "dim": 16, "channels": [4, 8], "freeze": "all",
                                           "unfreeze": {"start": 1, "every": 1, "blocks": 1}}
    counter = _CountTrainable()
    pred = MultimodalPredictor.from_config(cfg)
    initial = None

    class _Initial(L.Callback):
        def on_train_start(self, trainer, module):
            nonlocal initial
            initial = {k: v.clone() for k, v in module.net.encoders["img"].state_dict().items()}

    pred.fit(data["train"], data["valid"], callbacks=[_Initial(), counter])
    blocks = pred.net.encoders["img"].blocks()
    sizes = [sum(p.numel() for p in b.parameters()) for b in blocks]  # stage 1, stage 2, projections
    assert counter.counts == [0, sizes[-1], sizes[-1] + sizes[-2]]
    final = pred.net.encoders["img"].state_dict()
    first_stage = [k for k in final if k.startswith("stages.0.") and "num_batches" not in k]
    assert first_stage and all(torch.equal(final[k], initial[k]) for k in first_stage)
    assert not torch.equal(final["stages.1.0.weight"], initial["stages.1.0.weight"])
    said = [line for line in capsys.readouterr().err.splitlines() if "gradual unfreezing" in line]
    assert said == ["img: 1 of 3 encoder blocks train from epoch 2 (gradual unfreezing)",
                    "img: 2 of 3 encoder blocks train from epoch 3 (gradual unfreezing)"]


def test_blocks_unfrozen_from_a_wholly_frozen_encoder_train_their_batch_norm_and_dropout(data):
    cfg = config(epochs=3)
    cfg["modalities"]["img"]["encoder"] = {"name": "cnn", "dim": 16, "channels": [4, 8], "freeze": "all",
                                           "unfreeze": {"start": 1, "every": 1, "blocks": 1}}
    modes: list[list[tuple[bool, bool]]] = []

    class _Modes(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 0:  # (block trains, its batch-norm and dropout layers in training mode)
                blocks = module.net.encoders["img"].blocks()
                modes.append([(any(p.requires_grad for p in b.parameters()),
                               all(m.training for m in b.modules()
                                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm | torch.nn.Dropout)))
                              for b in blocks])

    MultimodalPredictor.from_config(cfg).fit(data["train"], data["valid"], callbacks=[_Modes()])
    assert [[trains for trains, _ in epoch] for epoch in modes] == [[False] * 3, [False, False, True],
                                                                  [False, True, True]]
    assert all(trains == training for epoch in modes for trains, training in epoch)
