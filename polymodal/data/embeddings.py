"""The frozen-encoder feature cache: each input's embedding computed once, stored, reused.

A frozen encoder (``freeze: all``) maps the same input to the same output in every epoch and
every run, so with ``encoder.cache: true`` its outputs are computed once per distinct input and
training never runs it: batches carry the stored outputs (``pooled`` (B, D), and with a
token-level fusion ``tokens`` (B, T, D) + ``token_mask`` (B, T)) and ``MultimodalNet`` passes
them straight to the fusion.

An encoder may cache a frozen front stage only (``frame_cnn`` with ``frame.cache``: the frame
encoder's vector of every frame, under a temporal model that trains): the config's
``cached_stage()`` asks for it and the encoder's ``cached_stage()``
(:class:`~polymodal.models.encoders.base.CachedStage`) says what to run. The store then holds the
arrays the stage returns (``frame_vectors`` (T, D) float32, ``mask`` (T,) bool per clip), batches
carry them as the encoder's keyword inputs, and ``MultimodalNet`` runs the encoder on them (the
rest of it only). Its key hashes the stage's weights and settings, not the rest's: training the
temporal model, or changing its settings, reuses the stored vectors.

On disk (``data.cache_dir``) embeddings live in a :class:`~polymodal.data.cache.FeatureStore`
under ``<cache_dir>/embeddings/<fingerprint>/``: memory-mapped, append-only, atomically
committed segments, keyed per item by the content hash of the input (file bytes or inline value).
The fingerprint hashes

- the encoder's (or cached stage's) weights (every tensor of its state; ONNX encoders hash their
  model files) and the settings that change its eval-mode outputs (a pooling, a layer choice; not
  ``dropout`` or the weights' path: :data:`CACHE_NEUTRAL`),
- the preprocessing: config (including batch-time normalisation), fitted state, and
- what is stored (pooled only, tokens too, or a stage's arrays),

so changing any of them, or the input file, computes fresh embeddings, while the same input
under another name or in another run is a hit. Without a ``cache_dir`` the embeddings are
computed once per fit and held in memory.

A fitted model reads the same store back (:func:`reuse_cached_features`): ``evaluate`` and
``predict`` on rows the cache holds (a fit's validation and test rows, a manifest predicted
before) run no frozen encoder, and the report's analyses, which run the network on the same rows
many times (modality subsets, Shapley importance, calibration, the uncorrupted modalities of a
robustness sweep), embed each row once. What needs the inputs themselves (a corrupted copy of the
modality, integrated gradients over its pixels, the latency measurement, export) reads the
encoded table, and the whole encoder, cached stage included, runs on it.

This module needs only ``torch``: the encoder is any module with the encoder face
(``forward(**inputs) -> (pooled, tokens, token_mask)``, ``weights_fingerprint()``, ``cached_stage()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from polymodal.data.cache import FeatureStore, cache_root, open_cache_dir
from polymodal.data.content_keys import KEY_BYTES, StatMemo, content_keys
from polymodal.data.encode import EncodedModality, EncodedTable, gather_cells, manifest_cells
from polymodal.data.manifest import Manifest
from polymodal.data.modalities.base import ArraySpec, Preprocessor, digested
from polymodal.utils.device import default_device
from polymodal.utils.io import exclusive_lock
from polymodal.utils.progress import progress_bar

if TYPE_CHECKING:
    from polymodal.models.encoders.base import CachedStage

SUBFOLDER = "embeddings"
# encoder settings that do not change what a frozen encoder outputs in eval mode: the cache flag
# itself, where the weights were read from (the weights are hashed themselves), and what acts in
# training only (dropout; whether word vectors would train): changing them reuses the stored outputs
CACHE_NEUTRAL = {"cache", "weights", "path", "dropout", "train_vectors"}
BATCH = 64


class PrecomputedBatcher:
    """``to_batch`` for stored encoder (or cached stage) outputs: the keywords the network takes in
    place of raw inputs (see ``MultimodalNet``); masks stay boolean, the rest is float."""

    def to_batch(self, arrays: Mapping[str, torch.Tensor], train: bool) -> dict[str, torch.Tensor]:
        return {k: v.bool() if k == "token_mask" or v.dtype == torch.bool else v.float() for k, v in arrays.items()}


def embedding_fingerprint(encoder: torch.nn.Module, preprocessor: Preprocessor, tokens: bool,
                          settings: Mapping[str, Any] | None = None, stage: bool = False) -> str:
    """Hash of the encoder's weights and settings (its config: a pooling or a layer choice changes
    the outputs of the same weights), the full preprocessing (config and fitted state) and the
    stored layout: what determines an input's stored embedding. With ``stage``, ``encoder`` and
    ``settings`` are a cached front stage's (:class:`~polymodal.models.encoders.base.CachedStage`)."""
    cfg = getattr(preprocessor, "cfg", None)
    layout = {"stage": True} if stage else {}  # (a whole encoder's key as before the stages came)
    payload = json.dumps({**layout,
        "encoder": encoder.weights_fingerprint(),
        "encoder_settings": digested(dict(settings or {})),
        "preprocess": preprocessor.fingerprint(),
        # not where a tokenizer's files sit (their content is in the fingerprint): a saved run loads its own copy
        "preprocess_config": None if cfg is None else preprocessor.settings_digest_config(),
        "preprocess_state": digested(preprocessor.get_state()),
        "tokens": tokens,
    }, sort_keys=True)
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


Produce = Callable[[dict[str, torch.Tensor]], dict[str, np.ndarray]]  # encoder inputs -> arrays to store


def _run(produce: Produce, preprocessor: Preprocessor, arrays: Mapping[str, Any], rows: np.ndarray,
         device: torch.device) -> dict[str, np.ndarray]:
    """What ``produce`` stores for ``rows`` of the featurised ``arrays``."""
    batch = {k: torch.from_numpy(np.ascontiguousarray(v[rows])) for k, v in arrays.items()}
    return produce({k: v.to(device) for k, v in preprocessor.to_batch(batch, False).items()})


def _encoder_outputs(encoder: torch.nn.Module, preprocessor: Preprocessor, tokens: bool,
                     inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A whole encoder's stored outputs: ``pooled`` (B, D) [+ ``tokens`` (B, T, D), ``token_mask`` (B, T)]."""
    out = encoder(**inputs)
    result = {"pooled": out.pooled.float().cpu().numpy()}
    if tokens:
        if out.tokens is None:
            raise ValueError(f"modality '{preprocessor.name}': the fusion reads encoder tokens, but this encoder "
                             "returns only a pooled vector")
        mask = out.token_mask if out.token_mask is not None else torch.ones(out.tokens.shape[:2], dtype=torch.bool)
        result["tokens"] = out.tokens.float().cpu().numpy()
        result["token_mask"] = mask.cpu().numpy()
    return result


def _stage_outputs(stage: CachedStage, inputs: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A cached stage's arrays, floats as float32 (what the network reads in place of ``inputs``)."""
    return {k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in stage.run(**inputs).items()}


class _Embedder:
    """Runs one frozen encoder (or cached stage: ``module``) over chosen rows in batches (eval
    mode, no autograd), restoring its mode and device afterwards."""

    def __init__(self, module: torch.nn.Module, produce: Produce, preprocessor: Preprocessor,
                 modality: EncodedModality, batch_size: int, progress: bool, device: torch.device):
        self.module, self.produce, self.preprocessor, self.modality = module, produce, preprocessor, modality
        self.batch_size, self.progress = batch_size, progress
        self.device = device

    def __call__(self, rows: np.ndarray, write: Any, arrays: Mapping[str, Any] | None = None) -> None:
        """``write(positions, outputs)`` for consecutive batches of ``rows`` (of ``arrays``, default
        the modality's)."""
        arrays = self.modality.arrays if arrays is None else arrays
        encoder = self.module
        params = next(iter(encoder.parameters()), None)
        home = params.device if params is not None else torch.device("cpu")
        device = self.device
        was_training = encoder.training
        encoder.to(device).eval()
        try:
            with torch.inference_mode(), progress_bar(len(rows), f"embedding {self.preprocessor.name}",
                                                      enabled=self.progress, min_total=1) as advance:
                for start in range(0, len(rows), self.batch_size):
                    part = rows[start:start + self.batch_size]
                    write(np.arange(start, start + len(part)), _run(self.produce, self.preprocessor, arrays, part,
                                                                     device))
                    advance(len(part))
        finally:
            encoder.to(home).train(was_training)


def embed_modality(encoder: torch.nn.Module, preprocessor: Preprocessor, modality: EncodedModality,
                   keys: np.ndarray | None = None, *, cache_dir: Path | None = None, tokens: bool = False,
                   batch_size: int = BATCH, progress: bool = False,
                   settings: Mapping[str, Any] | None = None, device: torch.device | None = None,
                   stage: CachedStage | None = None) -> EncodedModality:
    """Replace a modality's featurised arrays by its frozen encoder's outputs (or its cached
    stage's).

    Args:
        modality: the encoded modality (N rows); only present rows are embedded.
        keys: (N,) content keys (``S16``) of the rows, needed with ``cache_dir``.
        cache_dir: the on-disk cache root (``data.cache_dir``), or None to keep results in memory.
        tokens: also store token sequences and masks (for token-level fusion; not with ``stage``).
        settings: the encoder's config (part of the cache key beside its weights); with ``stage``,
            the stage's.
        device: where the encoder runs (default: :func:`~polymodal.utils.device.default_device`).
        stage: store this front stage's arrays (``encoder.cached_stage()``) instead of the whole
            encoder's outputs; the encoder then runs on them.

    Returns:
        The modality with arrays ``pooled`` (N, D) [+ ``tokens`` (N, T, D), ``token_mask`` (N, T)]
        (with ``stage``: the stage's arrays, e.g. ``frame_vectors`` (N, T, D), ``mask`` (N, T)),
        zero rows where absent, and a :class:`PrecomputedBatcher`.
    """
    n = len(modality.present)
    rows = np.flatnonzero(modality.present)
    device = device if device is not None else default_device()
    if stage is None:
        module, produce = encoder, lambda inputs: _encoder_outputs(encoder, preprocessor, tokens, inputs)
    else:
        module, produce = stage.module, lambda inputs: _stage_outputs(stage, inputs)
    run = _Embedder(module, produce, preprocessor, modality, batch_size, progress, device)
    if cache_dir is None:
        arrays: dict[str, np.ndarray] = {}

        def write_memory(positions: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
            for key, value in outputs.items():
                if key not in arrays:
                    arrays[key] = np.zeros((n, *value.shape[1:]), value.dtype)
                arrays[key][rows[positions]] = value

        run(rows, write_memory)
        if not arrays and stage is None:  # nothing present: nothing will read the rows
            arrays = {"pooled": np.zeros((n, encoder.output_dim), np.float32)}
        elif not arrays:  # the stage's layout, from one zero input (absent rows never reach the encoder)
            zero = {k: np.zeros((1, *spec.shape), spec.dtype) for k, spec in preprocessor.spec().items()}
            run(np.zeros(1, np.int64), lambda positions, outputs: arrays.update(
                {k: np.zeros((n, *v.shape[1:]), v.dtype) for k, v in outputs.items()}), zero)
        return EncodedModality(arrays, modality.present.copy(), PrecomputedBatcher())
    if keys is None:
        raise ValueError("embed_modality: content keys are needed to cache embeddings on disk")
    root = Path(cache_dir) / SUBFOLDER
    fingerprint = embedding_fingerprint(module, preprocessor, tokens and stage is None, settings, stage is not None)
    store = _existing_store(root, fingerprint)
    if len(_unstored(store, keys, rows)):  # one process at a time embeds into a store: the others reuse it

        def waiting(lock: Path) -> None:
            if progress:
                print(f"embedding {preprocessor.name}: another process is embedding into {root / fingerprint} "
                      f"(lock {lock}); waiting to reuse what it stores", file=sys.stderr, flush=True)

        with exclusive_lock(root / fingerprint, None, waiting):
            store = _existing_store(root, fingerprint)
            todo = _unstored(store, keys, rows)
            if len(todo):
                store = _fill(store, root, fingerprint, run, todo, keys)
    if store is None:  # nothing present, nothing stored
        return embed_modality(encoder, preprocessor, modality, None, tokens=tokens, batch_size=batch_size,
                              device=device, stage=stage)
    segment, slot = store.lookup(keys[rows])
    segment_of = np.full(n, -1, np.int64)
    slot_of = np.zeros(n, np.int64)
    segment_of[rows], slot_of[rows] = segment, slot
    return EncodedModality(store.view(segment_of, slot_of), modality.present.copy(), PrecomputedBatcher())


def _unstored(store: FeatureStore | None, keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The rows (of ``rows``) whose content ``store`` lacks, one per distinct content (one encoder
    pass each)."""
    segment = store.lookup(keys[rows])[0] if store is not None else np.full(len(rows), -1, np.int64)
    unique: dict[bytes, int] = {}
    for position in np.flatnonzero(segment < 0):
        unique.setdefault(bytes(keys[rows[position]]), int(rows[position]))
    return np.asarray(list(unique.values()), np.int64)


def _existing_store(root: Path, fingerprint: str) -> FeatureStore | None:
    """The embedding store of ``fingerprint``, or None when nothing was stored under it yet (its
    array layout, ``spec.json``, is written with the first segment)."""
    spec_file = root / fingerprint / "spec.json"
    if not spec_file.is_file():
        return None
    raw = json.loads(spec_file.read_text(encoding="utf-8"))
    return FeatureStore(root, fingerprint, {k: ArraySpec(tuple(v["shape"]), v["dtype"]) for k, v in raw.items()})


def _fill(store: FeatureStore | None, root: Path, fingerprint: str, run: _Embedder, todo: np.ndarray,
          keys: np.ndarray) -> FeatureStore:
    """Embed rows ``todo`` into one new segment (committed atomically); creates the store, and
    its ``spec.json``, from the first batch's shapes when it does not exist yet."""
    state: dict[str, Any] = {"store": store}

    def write(positions: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        if "out" not in state:
            if state["store"] is None:
                from polymodal.utils.io import atomic_write_json

                (root / fingerprint).mkdir(parents=True, exist_ok=True)
                atomic_write_json(root / fingerprint / "spec.json",
                                  {k: {"shape": list(v.shape[1:]), "dtype": v.dtype.str} for k, v in outputs.items()})
                state["store"] = _existing_store(root, fingerprint)
            state["tmp"], state["out"] = state["store"].open_segment(len(todo))
            state["filled"] = np.zeros(len(todo), bool)
        for key, value in outputs.items():
            state["out"][key][positions] = value
        state["filled"][positions] = True

    try:
        run(todo, write)
    except BaseException:
        if "tmp" in state:
            state["store"].discard_segment(state["tmp"])
        raise
    state["store"].commit_segment(state["tmp"], state["out"], keys[todo], state["filled"])
    return state["store"]


def row_keys(cells: list[Any], rows: np.ndarray, present: np.ndarray, file_based: bool, cache_dir: Path) -> np.ndarray:
    """(N,) content keys of ``cells[rows]`` where ``present`` (zeros elsewhere), through the cache
    folder's stat memo.

    Raises:
        OSError: a file that was decoded a moment ago can no longer be read.
    """
    keys = np.zeros(len(rows), f"S{KEY_BYTES}")
    todo = np.flatnonzero(present)
    memo = StatMemo(cache_dir) if file_based else None
    hashed, errors = content_keys(gather_cells(cells, rows[todo]), file_based, memo)
    if memo is not None:
        memo.flush()
    if errors:
        raise next(iter(errors.values()))
    keys[todo] = hashed
    return keys


def cached_modalities(config: Any) -> list[str]:
    """The modalities whose frozen encoder's outputs (``encoder.cache: true``), or a frozen front
    stage's (``encoder.frame.cache: true`` under a trainable temporal model: ``cached_stage()``), are
    cached, sorted: their batches carry stored arrays in place of the inputs."""
    return [n for n in config.modality_names if config.modalities[n].encoder.caches_features()]


def attach_cached_features(config: Any, net: Any, pipeline: Any, manifest: Manifest, table: EncodedTable,
                           progress: bool = False) -> EncodedTable:
    """``table`` with every cached modality's arrays (:func:`cached_modalities`) replaced by its
    encoder's stored outputs, or its cached stage's arrays (computed where missing); other modalities
    unchanged. A fit's: the cache folder (``data.cache_dir``) is created when missing, and one that
    cannot be written is refused.

    Args:
        config: the run's Config. net: the network, or a model holding it, with its encoders by
            name (``net.encoders[name]``: a ``MultimodalNet``, an ``AnomalyModel``).
        pipeline: the fitted DataPipeline. manifest: the manifest ``table`` was encoded from.
    """
    if not cached_modalities(config):
        return table
    root = cache_root(config.data.cache_dir)
    return _attach(config, net, pipeline, manifest, table, None if root is None else open_cache_dir(root), progress)


def reusable_cache_dir(config: Any) -> Path | None:
    """The feature cache folder a fitted model's inference reads stored embeddings from: the
    configured one (``data.cache_dir``, else ``POLYMODAL_CACHE_DIR``) when it exists and this user
    can write to it, else None (the frozen encoders then run on the inputs). Encoding the manifest
    has opened it already (:func:`~polymodal.data.cache.open_cache_dir`: created when missing, as
    on a run moved to another machine; refused, named, when this user cannot write to it)."""
    root = cache_root(config.data.cache_dir)
    if root is None:
        return None
    folder = Path(root)
    return folder if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK) else None


def reuse_cached_features(config: Any, net: Any, pipeline: Any, manifest: Manifest, table: EncodedTable, *,
                          in_memory: bool = False, progress: bool = False) -> EncodedTable:
    """A fitted model's inference on ``table``: each ``encoder.cache`` modality's stored encoder
    outputs in place of its inputs, so that a frozen encoder is not run again on inputs the cache
    already holds (the fingerprint of weights + preprocessing and each input's content key say which;
    inputs it lacks are embedded once and stored, as in a fit).

    Without a usable cache folder (:func:`reusable_cache_dir`): with ``in_memory`` the outputs are
    computed once and held in memory (for analyses that run the network many times on the same
    rows); without it ``table`` is returned unchanged, and the network runs the encoder on the
    inputs (as costly as computing them here, and nothing to hold).
    """
    if not cached_modalities(config):
        return table
    cache_dir = reusable_cache_dir(config)
    if cache_dir is None and not in_memory:
        return table
    return _attach(config, net, pipeline, manifest, table, cache_dir, progress)


def _attach(config: Any, net: Any, pipeline: Any, manifest: Manifest, table: EncodedTable, cache_dir: Path | None,
            progress: bool) -> EncodedTable:
    """:func:`attach_cached_features` with the cache folder opened (None: in memory)."""
    tokens = bool(getattr(config.fusion, "tokens", False))
    modalities = dict(table.modalities)
    for name in cached_modalities(config):
        prep = pipeline.preprocessors[name]
        mod = table.modalities[name]
        if mod.batcher is not None:  # already embedded
            continue
        keys = None
        if cache_dir is not None:
            cells = manifest_cells(manifest, config.modalities[name], prep.file_based)
            keys = row_keys(cells, table.rows, mod.present, prep.file_based, Path(cache_dir))
        encoder_cfg, stage = config.modalities[name].encoder, None
        staged = encoder_cfg.cached_stage()
        if staged is not None:  # the front stage's config and weights key the store, not the rest's
            encoder_cfg, stage = staged[1], net.encoders[name].cached_stage()
        settings = encoder_cfg.model_dump(mode="json", exclude=CACHE_NEUTRAL)
        modalities[name] = embed_modality(net.encoders[name], prep, mod, keys, cache_dir=cache_dir, tokens=tokens,
                                          batch_size=config.train.batch_size, progress=progress, settings=settings,
                                          device=default_device(config.train.accelerator), stage=stage)
    return EncodedTable(modalities, table.rows, table.skipped)
