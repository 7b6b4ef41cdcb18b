"""Achieved training throughput as a fraction of the machine's measured matmul FLOP/s.

1. The floor: the median FLOP/s of a float32 ``torch.mm`` (``--matmul`` square matrices) with all
   torch threads, after a warm-up.
2. Two fused models trained with ``MultimodalPredictor.fit``, their FLOPs counted with
   ``torch.utils.flop_counter.FlopCounterMode`` on one real training step (forward + backward) and
   one validation batch:
   - the small image + audio CNN pair on FSDD + MNIST (convolutions: what real models do);
   - a wide tabular MLP pair on synthetic data (matmuls: the best case for the floor).
   Achieved FLOP/s = (steps x FLOPs per step + validation FLOPs) / training wall time, where the
   wall time is ``fit``'s own ``train_seconds`` (data preparation excluded), median of ``--repeats``.

    python benchmarks/flops.py --data-root ../shared/data
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import fsdd_mnist_by_speaker, parser, save
from overhead import CONFIG
from torch.utils.flop_counter import FlopCounterMode

from polymodal import MultimodalPredictor

MLP_CONFIG = {
    "task": "classification", "target": "label",
    "modalities": {
        f"t{i}": {"kind": "tabular", "columns": [f"t{i}_{j}" for j in range(64)],
                  "encoder": {"name": "mlp", "hidden": [1024, 1024], "dim": 512}} for i in range(2)},
    "fusion": {"name": "concat"},
    "head": {"name": "mlp", "hidden": [1024], "dropout": 0.0},
    "loss": {"unimodal_weight": 0.0},
    "train": {"epochs": 2, "batch_size": 256, "lr": 1e-3, "seed": 0, "progress": False, "early_stopping": None},
}


def matmul_flops(size: int, repeats: int) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(max(repeats, 5)):
        started = time.perf_counter()
        for _ in range(10):
            a @ b
        times.append((time.perf_counter() - started) / 10)
    return 2 * size**3 / statistics.median(times)


def counted_flops(predictor: MultimodalPredictor, data: Path | pd.DataFrame, train: bool) -> tuple[int, int]:
    """(FLOPs of one batch, rows in that batch): a training step (forward + backward of the loss)
    or a validation forward."""
    pipeline, net = predictor.pipeline, predictor.net
    manifest = pipeline.read(data, require_target=True)
    table = pipeline.encode(manifest)
    loader = predictor._loader(table, pipeline.encode_targets(manifest, table), train=train)
    batch = next(iter(loader))
    net.train(train)
    counter = FlopCounterMode(display=False)
    with counter:
        outputs = net(batch["inputs"], batch["present"])
        if train:
            torch.nn.functional.cross_entropy(outputs, batch["target"]).backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops(), int(batch["target"].shape[0])


def achieved(config: dict, train: Path | pd.DataFrame, valid: Path | pd.DataFrame, repeats: int) -> dict:
    seconds, predictor = [], None
    for _ in range(repeats):
        predictor = MultimodalPredictor.from_config(config).fit(train, valid)
        seconds.append(predictor.info["train_seconds"])
    step_flops, batch = counted_flops(predictor, train, train=True)
    valid_flops, valid_batch = counted_flops(predictor, valid, train=False)
    n_train = len(pd.read_csv(train) if isinstance(train, Path) else train)
    n_valid = len(pd.read_csv(valid) if isinstance(valid, Path) else valid)
    epochs = config["train"]["epochs"]
    total = epochs * (n_train // batch) * step_flops + epochs * n_valid * valid_flops / valid_batch
    return {"train_seconds": statistics.median(seconds), "gflop_per_step": step_flops / 1e9,
            "total_gflop": total / 1e9, "achieved_gflops": total / statistics.median(seconds) / 1e9}


def synthetic(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 128)).astype(np.float32)
    label = (x[:, :8].sum(1) > 0).astype(int)
    columns = {f"t{i}_{j}": x[:, 64 * i + j] for i in range(2) for j in range(64)}
    return pd.DataFrame({**columns, "label": label})


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--matmul", type=int, default=1024)
    args = p.parse_args()
    data = fsdd_mnist_by_speaker(args)
    floor = matmul_flops(args.matmul, args.repeats)
    print(f"matmul floor: {floor / 1e9:.1f} GFLOP/s ({torch.get_num_threads()} threads)")
    models = {
        "image + audio CNNs (FSDD + MNIST)": achieved(CONFIG, data / "train.csv", data / "valid.csv", args.repeats),
        "wide tabular MLPs (synthetic, 20k rows)": achieved(MLP_CONFIG, synthetic(20_000, 0), synthetic(2_000, 1),
                                                            args.repeats),
    }
    rows = [{"model": name, **figures, "fraction_of_matmul": figures["achieved_gflops"] * 1e9 / floor}
            for name, figures in models.items()]
    for row in rows:
        print(f"{row['model']}: {row['achieved_gflops']:.1f} GFLOP/s = {row['fraction_of_matmul']:.1%} of the floor")
    save("flops", "Training throughput as a fraction of the measured matmul FLOP/s", {"throughput": rows},
         notes=[f"floor: float32 {args.matmul}x{args.matmul} matmul = {floor / 1e9:.1f} GFLOP/s "
                f"with {torch.get_num_threads()} threads",
                "FLOPs counted with torch.utils.flop_counter on a real batch (training: forward + backward)",
                f"median of {args.repeats} fits; wall time excludes data preparation"],
         extra={"matmul_gflops": floor / 1e9})


if __name__ == "__main__":
    main()
