"""GPU correctness in ~40 s: fusedlr's CUDA step against torch.optim.SGD(foreach=False), case by case.

Run by bench/gpu_check.sh (prints one line per case, PASS/FAIL, and exits 1 on any failure).
Without a CUDA device it says so and exits 0, so it can be run (and parsed) anywhere.

Cases: 600 tensors of sizes {0, 1, 65535, 65536, 65537, random up to 200k} plus one of
320 x 65536 + 5 elements (a tensor split across launches; more than 48 tensors and 480 step
counters per call; every counter equal to the step count after k steps); a misaligned slice
randn(n + 1)[1:]; found_inf = 1 leaves params, buffers and counters untouched; a device grad_scale
unscales and writes the grads back; a bfloat16 lr_tensor; one bfloat16 tensor of 2^31 + 3 elements
(its first and last 4096 checked); CUDA-graph capture with device grad_scale / found_inf and the
lr advancing over replays; clipping, LARS and schedule-free against their references; a model
laid out by fusedlr.SGD(flat=True) stepped as one tensor.
"""

from __future__ import annotations

import sys
import time
import traceback

import torch

RESULTS: list[tuple[str, bool, str]] = []


def case(fn):
    """Run one case; record PASS/FAIL with the reason, never stop the others."""
    t = time.perf_counter()
    try:
        fn()
        RESULTS.append((fn.__name__, True, f"{time.perf_counter() - t:.1f}s"))
    except Exception as error:  # noqa: BLE001 - every failure is reported, none stops the run
        RESULTS.append((fn.__name__, False, f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"))
    print(("PASS " if RESULTS[-1][1] else "FAIL ") + RESULTS[-1][0] + " " + RESULTS[-1][2].splitlines()[0], flush=True)
    torch.cuda.synchronize()


def _pair(sizes, dtype=torch.float32, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    ours = [torch.randn(n, generator=g, device="cuda", dtype=dtype).requires_grad_() for n in sizes]
    ref = [p.detach().clone().requires_grad_() for p in ours]
    return ours, ref


def _grads(ours, ref, step):
    g = torch.Generator(device="cuda").manual_seed(1000 + step)
    for p, q in zip(ours, ref):
        p.grad = torch.randn(p.shape, generator=g, device="cuda", dtype=p.dtype)
        q.grad = p.grad.clone()


def _close(a, b, rtol=1e-6, atol=1e-7):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol)


def many_tensors_and_a_split_one():
    import fusedlr

    gen = torch.Generator().manual_seed(0)
    sizes = [0, 1, 65535, 65536, 65537] * 20 + torch.randint(1, 200_000, (500,), generator=gen).tolist()
    sizes.append(320 * 65536 + 5)
    ours, ref = _pair(sizes)
    opt = fusedlr.SGD(ours, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    ref_opt = torch.optim.SGD(ref, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4, foreach=False)
    for k in range(3):
        _grads(ours, ref, k)
        opt.step()
        ref_opt.step()
    _close(ours, ref)
    steps = [float(opt.state[p]["step"]) for p in ours]
    assert all(s == 3.0 for s in steps), f"counters: {sorted(set(steps))}"


def misaligned_slice():
    import fusedlr

    base = torch.randn(100_001, device="cuda")
    p = base[1:].requires_grad_()
    q = p.detach().clone().requires_grad_()
    opt, ref = fusedlr.SGD([p], lr=0.1, momentum=0.9), torch.optim.SGD([q], lr=0.1, momentum=0.9, foreach=False)
    for k in range(2):
        _grads([p], [q], k)
        opt.step()
        ref.step()
    _close([p], [q])


def found_inf_changes_nothing_and_grad_scale_writes_back():
    import fusedlr

    ours, _ = _pair([1000, 70_000])
    opt = fusedlr.SGD(ours, lr=0.1, momentum=0.9)
    _grads(ours, ours, 0)
    opt.step()
    before = [p.detach().clone() for p in ours] + [opt.state[p]["momentum_buffer"].clone() for p in ours]
    counters = [float(opt.state[p]["step"]) for p in ours]
    opt.grad_scale, opt.found_inf = torch.tensor(4.0, device="cuda"), torch.tensor(1.0, device="cuda")
    opt.step()
    after = [p.detach() for p in ours] + [opt.state[p]["momentum_buffer"] for p in ours]
    assert all(torch.equal(a, b) for a, b in zip(before, after)), "found_inf=1 moved something"
    assert [float(opt.state[p]["step"]) for p in ours] == counters
    grads = [p.grad.clone() for p in ours]
    opt.found_inf = torch.tensor(0.0, device="cuda")
    opt.step()
    _close([p.grad for p in ours], [g / 4 for g in grads], rtol=0, atol=0)


def bf16_lr_tensor():
    import fusedlr

    ours, ref = _pair([5000])
    opt = fusedlr.SGD(ours, lr=torch.tensor(0.125, dtype=torch.bfloat16, device="cuda"))
    ref_opt = torch.optim.SGD(ref, lr=0.125, foreach=False)
    _grads(ours, ref, 0)
    opt.step()
    ref_opt.step()
    _close(ours, ref)


def huge_bf16_tensor():
    import fusedlr

    n = 2**31 + 3
    if torch.cuda.get_device_properties(0).total_memory < 4 * 3 * n:
        raise RuntimeError("not enough memory for a 2^31 + 3 element case")
    p = torch.zeros(n, dtype=torch.bfloat16, device="cuda", requires_grad=True)
    p.grad = torch.ones(n, dtype=torch.bfloat16, device="cuda")
    opt = fusedlr.SGD([p], lr=0.5, momentum=0.9)
    opt.step()
    for part in (p[:4096], p[-4096:]):
        assert torch.equal(part.detach(), torch.full_like(part, -0.5)), part[:8]
    del p, opt
    torch.cuda.empty_cache()


def graph_capture_with_scaler_tensors_and_schedule():
    import fusedlr
    from fusedlr import schedules as S

    p = torch.zeros(4096, device="cuda", requires_grad=True)
    p.grad = torch.ones(4096, device="cuda")
    schedule = S.warmup(S.cosine(10), 3)
    opt = fusedlr.SGD([p], lr=0.1, schedule=schedule)
    opt.grad_scale, opt.found_inf = torch.tensor(2.0, device="cuda"), torch.tensor(0.0, device="cuda")
    opt.step()  # warm-up outside the graph
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        opt.step()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    values = []
    for _ in range(4):
        p.grad.fill_(1.0)  # (unscaled in place by each replay)
        before = p.detach().clone()
        graph.replay()
        torch.cuda.synchronize()
        values.append(float((before - p.detach())[0]) * 2.0)  # lr * (1 / scale), undone
    want = [schedule(t, 0.1) for t in range(2, 6)]  # (steps 0 and 1 ran; the capture itself runs nothing)
    assert all(abs(a - b) < 1e-6 for a, b in zip(values, want)), (values, want)


def clipping_lars_schedule_free():
    import fusedlr

    ours, ref = _pair([3000, 70_000, 5])
    opt = fusedlr.SGD(ours, lr=0.1, momentum=0.9, max_grad_norm=0.5)
    ref_opt = torch.optim.SGD(ref, lr=0.1, momentum=0.9, foreach=False)
    for k in range(3):
        _grads(ours, ref, k)
        opt.step()
        torch.nn.utils.clip_grad_norm_(ref, 0.5)
        ref_opt.step()
    _close(ours, ref, rtol=1e-5, atol=1e-6)
    try:
        from timm.optim import Lars
    except ImportError:
        Lars = None
    if Lars is not None:
        ours, ref = _pair([3000, 70_000])
        opt, ref_opt = fusedlr.Lars(ours, lr=0.5, momentum=0.9, weight_decay=1e-4), Lars(ref, lr=0.5, momentum=0.9,
                                                                                       weight_decay=1e-4)
        for k in range(3):
            _grads(ours, ref, k)
            opt.step()
            ref_opt.step()
        _close(ours, ref, rtol=1e-5, atol=1e-6)
    try:
        import schedulefree
    except ImportError:
        return
    ours, ref = _pair([3000, 70_000])
    opt, ref_opt = fusedlr.ScheduleFreeSGD(ours, lr=0.5), schedulefree.SGDScheduleFree(ref, lr=0.5)
    opt.train()
    ref_opt.train()
    for k in range(4):
        _grads(ours, ref, k)
        opt.step()
        ref_opt.step()
    opt.eval()
    ref_opt.eval()
    _close(ours, ref, rtol=1e-5, atol=1e-6)


def flat_layout():
    """fusedlr.SGD(flat=True) on CUDA: a model's parameters stepped as one tensor (through real
    backward passes, zero_grad keeping the views), against torch.optim.SGD."""
    import fusedlr

    torch.manual_seed(0)
    ours = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(8)]).cuda()
    ref = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(8)]).cuda()
    ref.load_state_dict(ours.state_dict())
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-2, nesterov=True)
    opt, ref_opt = fusedlr.SGD(ours.parameters(), flat=True, **kw), torch.optim.SGD(ref.parameters(), **kw)
    x = torch.randn(5, 16, 64, device="cuda", generator=torch.Generator(device="cuda").manual_seed(1))
    for k in range(5):
        for model, o in ((ours, opt), (ref, ref_opt)):
            o.zero_grad()
            model(x[k]).square().mean().backward()
            o.step()
    assert opt._native.last_step_tensors(0) == 1, opt._native.last_step_tensors(0)
    assert all(float(opt.state[p]["step"]) == 5.0 for p in ours.parameters())
    _close(list(ours.parameters()), list(ref.parameters()), rtol=1e-5, atol=1e-6)


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_correctness: no CUDA device (torch.cuda.is_available() is False): nothing to check")
        return 0
    print(f"gpu_correctness on {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    for fn in (many_tensors_and_a_split_one, misaligned_slice, found_inf_changes_nothing_and_grad_scale_writes_back,
               bf16_lr_tensor, graph_capture_with_scaler_tensors_and_schedule, clipping_lars_schedule_free,
               flat_layout, huge_bf16_tensor):
        case(fn)
    failed = [name for name, ok, _ in RESULTS if not ok]
    for name, ok, detail in RESULTS:
        if not ok:
            print(f"--- {name}\n{detail}")
    print(f"gpu_correctness: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
