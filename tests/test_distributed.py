"""fusedlr.SGD under torch.distributed on CPU: two gloo processes over loopback, compared with
torch.optim.SGD in the same setting. DistributedDataParallel, ZeroRedundancyOptimizer and FSDP2
(fully_shard, DTensor parameters).

All scenarios run in one pair of processes (spawning and importing torch is most of the cost),
each scenario's exception reported to its own test. Every run is bounded: a collective that
waits longer than `COLLECTIVE_TIMEOUT_S` raises, and the processes are killed and the tests
fail after `TIMEOUT_S` in all."""

from __future__ import annotations

import datetime
import faulthandler
import os
import socket
import sys
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import fusedlr
from conftest import EXACT_TOL

WORLD_SIZE = 2
TIMEOUT_S = 120
COLLECTIVE_TIMEOUT_S = 30
OPTIONS = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)
STEPS = 4


# --- harness ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, scenarios: list[str], port: int, out: str) -> None:
    """Runs in each spawned process: join the group, run the scenarios, save what they return
    (or the traceback of the one that raised)."""
    faulthandler.enable()  # a crash in a scenario prints its Python stack
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if sys.platform == "linux":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback, whatever the hostname resolves to
    torch.set_num_threads(1)  # two processes on a small CI machine
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=COLLECTIVE_TIMEOUT_S)
    )
    results = {}
    try:
        for scenario in scenarios:
            try:
                results[scenario] = SCENARIOS[scenario](rank)
            except Exception:
                results[scenario] = {"error": traceback.format_exc()}
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.barrier()  # both ranks are done before either tears gloo down
    finally:
        dist.destroy_process_group()
    # Saved and torn down: leave without the interpreter's own teardown, where gloo's threads
    # sometimes abort a process after its work is done ("terminate called without an active
    # exception": 3 CI runs out of 4 on the 2-core machine, after both ranks had saved).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_on_two_ranks(scenarios: list[str], tmp_path: Path) -> list[dict]:
    """Spawn WORLD_SIZE processes running `scenarios`; one result dict per rank. A process that
    dies fails the caller with its traceback, a hang fails it after TIMEOUT_S."""
    ctx = mp.start_processes(
        _entry, args=(scenarios, _free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1.0):
            if time.monotonic() > deadline:
                pytest.fail(f"{scenarios}: the {WORLD_SIZE} processes did not finish within {TIMEOUT_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
                p.join()
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]


def _model() -> torch.nn.Module:
    # Odd sizes, so FSDP2 shards unevenly (one rank gets a 0-size shard of the last bias).
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(10, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))


def _batch(rank: int, step: int) -> torch.Tensor:
    return torch.randn(8, 10, generator=torch.Generator().manual_seed(100 * rank + step))


def _train(model, opt, rank: int) -> None:
    for t in range(STEPS):
        opt.zero_grad()
        model(_batch(rank, t)).pow(2).mean().backward()
        opt.step()


# --- scenarios (run inside the spawned processes) ----------------------------------------------


def _ddp(rank: int) -> dict:
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    for name, cls, kw in (("fusedlr", fusedlr.SGD, {}), ("torch", torch.optim.SGD, dict(foreach=False))):
        model = DDP(_model())
        _train(model, cls(model.parameters(), **OPTIONS, **kw), rank)
        out[name] = [p.detach().clone() for p in model.parameters()]
    return out


def _ddp_flat(rank: int) -> dict:
    """fusedlr.SGD(flat=True) under DDP: DDP copies the all-reduced gradients into .grad in place,
    so the layout holds (one tensor per step); with gradient_as_bucket_view=True DDP makes .grad
    views of its own buckets, and the step goes tensor by tensor, with the same numbers."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    for name, bucket_view in (("flat", False), ("flat_bucket_view", True)):
        model = DDP(_model(), gradient_as_bucket_view=bucket_view)
        opt = fusedlr.SGD(model.parameters(), flat=True, **OPTIONS)
        _train(model, opt, rank)
        out[name] = [p.detach().clone() for p in model.parameters()]
        out[name + "_tensors"] = opt._native.last_step_tensors(0)
    return out


def _zero(rank: int) -> dict:
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    out = {}
    for name, cls, kw in (("fusedlr", fusedlr.SGD, {}), ("torch", torch.optim.SGD, dict(foreach=False))):
        model = DDP(_model())
        opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, **OPTIONS, **kw)
        _train(model, opt, rank)
        # Each rank holds the state of its partition; consolidate it on rank 0.
        opt.consolidate_state_dict(to=0)
        state = opt.state_dict() if rank == 0 else None
        out[name] = [p.detach().clone() for p in model.parameters()]
        out[f"{name}_partition"] = [len(g["params"]) for g in opt.optim.param_groups]
        if state is not None:
            out[f"{name}_buffers"] = [state["state"][i]["momentum_buffer"] for i in sorted(state["state"])]
    return out


def _fsdp2(rank: int) -> dict:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor, Replicate, distribute_tensor

    out, trained = {}, {}
    for name, cls, kw in (("fusedlr", fusedlr.SGD, {}), ("torch", torch.optim.SGD, dict(foreach=False))):
        model = _model()
        for layer in (model[0], model[2]):
            fully_shard(layer)
        fully_shard(model)
        assert all(isinstance(p, DTensor) for p in model.parameters())
        opt = cls(model.parameters(), **OPTIONS, **kw)
        _train(model, opt, rank)
        out[name] = [p.full_tensor().detach().clone() for p in model.parameters()]
        out[f"{name}_local_numel"] = [p.to_local().numel() for p in model.parameters()]
        bufs = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
        assert all(isinstance(b, DTensor) and b.placements == p.placements for b, p in zip(bufs, model.parameters()))
        out[f"{name}_buffers"] = [b.full_tensor() for b in bufs]
        trained[name] = (model, opt)

    # A grad placed unlike its parameter would be applied to the wrong elements shard by shard.
    model, opt = trained["fusedlr"]
    weight = model[0].weight
    before = weight.to_local().clone()
    weight.grad = distribute_tensor(torch.ones(weight.shape), weight.device_mesh, [Replicate()])
    try:
        opt.step()
    except ValueError as error:
        out["mismatch_error"] = str(error)
    assert torch.equal(weight.to_local(), before)
    return out


def _fsdp2_clip(rank: int) -> dict:
    """FSDP2 with global-norm clipping: fusedlr's fused clip (the terms all-reduced over the mesh)
    against torch's clip_grad_norm_ over the DTensor grads, then torch's SGD."""
    from torch.distributed.fsdp import fully_shard

    out = {}
    for name in ("fusedlr", "torch"):
        model = _model()
        for layer in (model[0], model[2]):
            fully_shard(layer)
        fully_shard(model)
        if name == "fusedlr":
            opt = fusedlr.SGD(model.parameters(), **OPTIONS, max_grad_norm=0.05)
        else:
            opt = torch.optim.SGD(model.parameters(), **OPTIONS, foreach=False)
        norms = []
        for t in range(STEPS):
            opt.zero_grad()
            model(_batch(rank, t)).pow(2).mean().backward()
            if name == "torch":
                norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05).full_tensor())
            opt.step()
            if name == "fusedlr":
                norms.append(opt.last_grad_norm.clone())
        out[name] = [p.full_tensor().detach().clone() for p in model.parameters()]
        out[f"{name}_norms"] = norms
    return out


LARS_OPTIONS = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, trust_coeff=0.5)


def _fsdp2_lars(rank: int) -> dict:
    """FSDP2 with fusedlr.Lars (each tensor's norms all-reduced over its shards) against
    timm.optim.Lars on the unsharded model, trained on both ranks' batches (FSDP2 averages the
    ranks' gradients: the gradient of the mean of the two losses)."""
    from timm.optim import Lars as TimmLars
    from torch.distributed.fsdp import fully_shard

    out = {}
    for trust_clip in (False, True):
        model = _model()
        for layer in (model[0], model[2]):
            fully_shard(layer)
        fully_shard(model)
        _train(model, fusedlr.Lars(model.parameters(), **LARS_OPTIONS, trust_clip=trust_clip), rank)
        reference = _model()
        opt = TimmLars(reference.parameters(), **LARS_OPTIONS, trust_clip=trust_clip)
        for t in range(STEPS):
            opt.zero_grad()
            sum(reference(_batch(r, t)).pow(2).mean() for r in range(WORLD_SIZE)).div(WORLD_SIZE).backward()
            opt.step()
        out[trust_clip] = ([p.full_tensor().detach().clone() for p in model.parameters()],
                           [p.detach().clone() for p in reference.parameters()])
    return out


def _mixed_placements(rank: int) -> dict:
    """DTensor parameters laid out as tensor parallelism and HSDP lay them out: one sharded, one
    replicated (the same elements on both ranks) on one mesh. The fused clip and LARS must reduce
    the sharded one's norm terms over the mesh and not the replicated one's, and give the numbers
    of torch's clip_grad_norm_ and timm's Lars on the full tensors."""
    from timm.optim import Lars as TimmLars
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (WORLD_SIZE,))
    gen = torch.Generator().manual_seed(5)
    full = [torch.randn(6, 4, generator=gen), torch.randn(5, generator=gen)]
    grads = [[torch.randn(t.shape, generator=gen) for t in full] for _ in range(STEPS)]
    layouts = [[Shard(0)], [Replicate()]]
    out = {}
    for name, make, prepare in (
        ("clip", lambda ps: fusedlr.SGD(ps, **OPTIONS, max_grad_norm=0.5),
         lambda ps: torch.nn.utils.clip_grad_norm_(ps, 0.5)),
        ("lars", lambda ps: fusedlr.Lars(ps, **LARS_OPTIONS), None),
    ):
        ours = [torch.nn.Parameter(distribute_tensor(t.clone(), mesh, pl)) for t, pl in zip(full, layouts)]
        ref = [torch.nn.Parameter(t.clone()) for t in full]
        opt = make(ours)
        ref_opt = torch.optim.SGD(ref, **OPTIONS, foreach=False) if name == "clip" else TimmLars(ref, **LARS_OPTIONS)
        for t in range(STEPS):
            for p, q, g, pl in zip(ours, ref, grads[t], layouts):
                p.grad = distribute_tensor(g.clone(), mesh, pl)
                q.grad = g.clone()
            opt.step()
            if prepare is not None:
                prepare(ref)
            ref_opt.step()
        out[name] = ([p.full_tensor().detach().clone() for p in ours], [q.detach().clone() for q in ref])
    return out


SCENARIOS = {"ddp": _ddp, "ddp_flat": _ddp_flat, "zero": _zero, "fsdp2": _fsdp2, "fsdp2_clip": _fsdp2_clip, "fsdp2_lars": _fsdp2_lars,
             "mixed_placements": _mixed_placements}


# --- tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    return run_on_two_ranks(list(SCENARIOS), tmp_path_factory.mktemp("distributed"))


def results(two_ranks, scenario):
    """The scenario's result on each rank; a scenario that raised fails its test with the traceback."""
    ranks = [r[scenario] for r in two_ranks]
    for rank, r in enumerate(ranks):
        if "error" in r:
            pytest.fail(f"{scenario} raised on rank {rank}:\n{r['error']}")
    return ranks


def _assert_lists_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, **EXACT_TOL[torch.float32])


def test_ddp_gives_torch_sgd_weights(two_ranks):
    ranks = results(two_ranks, "ddp")
    for r in ranks:
        _assert_lists_close(r["fusedlr"], r["torch"])
    # DDP keeps the replicas identical
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["fusedlr"], ranks[1]["fusedlr"]))


def test_ddp_with_a_flat_layout_gives_torch_sgd_weights(two_ranks):
    ranks, plain = results(two_ranks, "ddp_flat"), results(two_ranks, "ddp")
    for r, p in zip(ranks, plain):
        _assert_lists_close(r["flat"], p["torch"])
        _assert_lists_close(r["flat_bucket_view"], p["torch"])
        assert r["flat_tensors"] == 1  # DDP wrote the gradients into the views: one tensor
        assert r["flat_bucket_view_tensors"] == 4  # DDP's bucket views: tensor by tensor


def test_zero_redundancy_optimizer_with_fusedlr_sgd_as_optimizer_class(two_ranks):
    ranks = results(two_ranks, "zero")
    for r in ranks:
        _assert_lists_close(r["fusedlr"], r["torch"])
        assert r["fusedlr_partition"] == r["torch_partition"]
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["fusedlr"], ranks[1]["fusedlr"]))
    assert sum(sum(r["fusedlr_partition"]) for r in ranks) == 4  # each parameter stepped on one rank
    _assert_lists_close(ranks[0]["fusedlr_buffers"], ranks[0]["torch_buffers"])


def test_fsdp2_fully_shard_on_cpu_steps_local_shards_like_torch_sgd(two_ranks):
    ranks = results(two_ranks, "fsdp2")
    for r in ranks:
        _assert_lists_close(r["fusedlr"], r["torch"])
        _assert_lists_close(r["fusedlr_buffers"], r["torch_buffers"])
    # really sharded: every parameter split across the ranks, one rank with an empty shard
    numels = [sum(n) for n in zip(ranks[0]["fusedlr_local_numel"], ranks[1]["fusedlr_local_numel"])]
    assert numels == [70, 7, 7, 1]
    assert 0 in ranks[0]["fusedlr_local_numel"] + ranks[1]["fusedlr_local_numel"]
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["fusedlr"], ranks[1]["fusedlr"]))
    for r in ranks:
        assert r["mismatch_error"].startswith("fusedlr.SGD: param group 0, params[0] is a DTensor with placements "
                                              "(Shard(dim=0),)")
        assert "but its grad has (Replicate(),)" in r["mismatch_error"]


def test_fsdp2_clipping_takes_the_global_norm_like_torchs_clip_grad_norm(two_ranks):
    ranks = results(two_ranks, "fsdp2_clip")
    for r in ranks:
        for a, b in zip(r["fusedlr_norms"], r["torch_norms"]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=0)
        assert any(float(n) > 0.05 for n in r["fusedlr_norms"])  # the clip acted
        for a, b in zip(r["fusedlr"], r["torch"]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [float(n) for n in ranks[0]["fusedlr_norms"]] == [float(n) for n in ranks[1]["fusedlr_norms"]]


def test_fsdp2_lars_takes_each_tensors_global_norms_like_timm(two_ranks):
    for r in results(two_ranks, "fsdp2_lars"):
        for trust_clip, (ours, timm_weights) in r.items():
            for a, b in zip(ours, timm_weights):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"trust_clip={trust_clip}: {m}")


def test_sharded_and_replicated_dtensors_clip_and_lars_like_full_tensors(two_ranks):
    for r in results(two_ranks, "mixed_placements"):
        for name, (ours, reference) in r.items():
            for a, b in zip(ours, reference):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m: f"{name}: {m}")
