"""Contrastive objectives under DDP see the global batch: 2 gloo processes, each holding half the
rows, get the single-process loss over all rows and, after DDP's gradient averaging, its gradients."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from polymodal.models.objectives.align import AlignInputs, ContrastiveObjective

ROWS, DIM, WORLD = 8, 4, 2


def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(ROWS, DIM, generator=generator), torch.randn(ROWS, DIM, generator=generator)


def loss_and_grads(za: torch.Tensor, zb: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    za, zb = za.clone().requires_grad_(True), zb.clone().requires_grad_(True)
    present = torch.ones(za.shape[0], dtype=torch.bool)
    objective = ContrastiveObjective([("a", "b")], temperature=0.1, learn_temperature=False)
    loss = objective(AlignInputs({"a": za, "b": zb}, {}, {"a": present, "b": present})).loss
    loss.backward()
    return float(loss.detach()), za.grad, zb.grad


def worker(rank: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        za, zb = embeddings()
        rows = slice(rank * ROWS // WORLD, (rank + 1) * ROWS // WORLD)
        loss, grad_a, grad_b = loss_and_grads(za[rows], zb[rows])
        results[rank] = (loss, grad_a / WORLD, grad_b / WORLD)  # DDP averages over ranks
    finally:
        dist.destroy_process_group()


def test_contrastive_loss_gathers_the_global_batch_across_ranks(tmp_path):
    manager = mp.Manager()
    results = manager.dict()
    # fork: the children inherit the imports (spawning re-imports torch, seconds per process)
    mp.start_processes(worker, args=(str(tmp_path / "init"), results), nprocs=WORLD, join=True, start_method="fork")
    za, zb = embeddings()
    loss, grad_a, grad_b = loss_and_grads(za, zb)
    alone, _, _ = loss_and_grads(za[: ROWS // WORLD], zb[: ROWS // WORLD])
    assert abs(alone - loss) > 1e-3, "the halves alone must give a different loss, or the test proves nothing"
    for rank in range(WORLD):
        rank_loss, rank_a, rank_b = results[rank]
        rows = slice(rank * ROWS // WORLD, (rank + 1) * ROWS // WORLD)
        assert abs(rank_loss - loss) < 1e-5
        torch.testing.assert_close(rank_a, grad_a[rows], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(rank_b, grad_b[rows], atol=1e-6, rtol=1e-4)
