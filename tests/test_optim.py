"""fusedlr.SGD against torch.optim.SGD, the reference for every number."""

from __future__ import annotations

import copy
from collections import defaultdict
import io
import itertools
import os
import pickle
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fusedlr
from conftest import CUDA_HALF_TOL, DTYPES, EXACT_TOL, HALF_VS_FP32_TOL, devices

# Every valid combination of the options that change the update.
OPTIONS = [
    dict(momentum=m, dampening=d, weight_decay=wd, nesterov=n, maximize=mx)
    for m, d, wd, n, mx in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 1e-2], [False, True], [False, True])
    if not (n and (m == 0 or d != 0)) and not (m == 0 and d != 0)
]
OPTION_IDS = [
    "m{momentum}-d{dampening}-wd{weight_decay}{n}{x}".format(
        n="-nesterov" if o["nesterov"] else "", x="-max" if o["maximize"] else "", **o
    )
    for o in OPTIONS
]

# 0-d, 0-size, sizes around every SIMD width (8/16 floats, 16/32 half), odd and large.
SHAPES = [(), (0,), (1,), (7,), (8,), (15,), (16,), (17,), (31,), (32,), (33,), (63,), (65,), (3, 5, 7), (1000,),
          (257, 1031)]


def make_params(shapes, dtype, layout="contiguous", seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        if layout == "transposed" and len(s) >= 2:
            t = torch.randn(tuple(reversed(s)), generator=g, dtype=torch.float64).to(dtype).t()
        elif layout == "channels_last":
            t = torch.randn((2, 3, 4, 5), generator=g, dtype=torch.float64).to(dtype)
            t = t.contiguous(memory_format=torch.channels_last)
        elif layout == "strided":  # every other element of a bigger tensor: neither dense nor contiguous
            t = torch.randn((*s, 2), generator=g, dtype=torch.float64).to(dtype)[..., 0]
        else:
            t = torch.randn(s, generator=g, dtype=torch.float64).to(dtype)
        out.append(t.to(device).requires_grad_())
    return out


def set_grads(params, step, layout="contiguous"):
    for i, p in enumerate(params):
        g = torch.Generator().manual_seed(1000 * step + i)
        grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype).to(p.device)
        if layout == "transposed" and p.dim() >= 2:
            grad = grad.t().contiguous().t()
        elif layout == "channels_last" and p.dim() == 4:
            grad = grad.contiguous(memory_format=torch.channels_last)
        p.grad = grad


def run(opt_factory, params, steps=4, layout="contiguous"):
    opt = opt_factory(params)
    for t in range(steps):
        set_grads(params, t, layout)
        opt.step()
    return opt


def assert_params_equal(actual, expected, **tol):
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a.detach(), e.detach(), **tol)


# --- parity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_torch_sgd_over_shapes(options, dtype, device):
    """Every option combination × dtype over all SHAPES in one param group (one fused call)."""
    ours = make_params(SHAPES, dtype, device=device)
    ref = make_params(SHAPES, dtype, device=device)
    opt = run(lambda p: fusedlr.SGD(p, lr=0.1, **options), ours)
    # float32/float64: torch's per-op path rounds like ours. Half types: torch's fused path, which
    # like ours computes in float32 and rounds once (foreach=False rounds after every op).
    torch_kw = dict(foreach=False) if dtype in (torch.float32, torch.float64) else dict(fused=True)
    ref_opt = run(lambda p: torch.optim.SGD(p, lr=0.1, **options, **torch_kw), ref)
    tol = CUDA_HALF_TOL[dtype] if device == "cuda" and dtype in CUDA_HALF_TOL else EXACT_TOL[dtype]
    assert_params_equal(ours, ref, **tol)
    if options["momentum"]:
        for p, q in zip(ours, ref):
            torch.testing.assert_close(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"], **tol)


@pytest.mark.parametrize("layout", ["transposed", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_non_contiguous_params_and_grads(layout, dtype):
    """Reference: torch.optim.SGD(foreach=False) in float32 on the same layout. (torch's own fused
    CPU path drifts on non-dense bfloat16 params with momentum: 0.53 apart after 4 steps here.)"""
    shapes = [(5, 7), (33, 17), (16,)] if layout != "channels_last" else [(2, 3, 4, 5)]
    ours = make_params(shapes, dtype, layout)
    ref = make_params(shapes, torch.float32, layout)
    options = dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-3)
    run(lambda p: fusedlr.SGD(p, **options), ours, layout=layout)
    run(lambda p: torch.optim.SGD(p, foreach=False, **options), ref, layout=layout)
    tol = EXACT_TOL[dtype] if dtype == torch.float32 else HALF_VS_FP32_TOL[dtype]
    for p, q in zip(ours, ref):
        assert p.stride() == q.stride()  # the layout is kept
        torch.testing.assert_close(p.detach().float(), q.detach(), **tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_types_update_long_tensors_like_fp32(dtype):
    """torch issue 191763: torch's vectorised CPU loop once left bf16/fp16 params unchanged.
    Long tensors (many SIMD widths plus a tail), non-zero grads, several steps, vs float32."""
    shapes = [(4099,), (517, 9)]
    ours = make_params(shapes, dtype)
    ref = [p.detach().float().requires_grad_() for p in ours]
    before = [p.detach().clone() for p in ours]
    opt = fusedlr.SGD(ours, lr=0.05, momentum=0.9, weight_decay=1e-2)
    ref_opt = torch.optim.SGD(ref, lr=0.05, momentum=0.9, weight_decay=1e-2, foreach=False)
    for t in range(5):
        set_grads(ours, t)
        for p, q in zip(ours, ref):
            q.grad = p.grad.float()
        opt.step()
        ref_opt.step()
    for p, q, b in zip(ours, ref, before):
        changed = (p.detach() != b).float().mean().item()
        assert changed > 0.99, f"only {changed:.1%} of the elements moved"
        torch.testing.assert_close(p.detach().float(), q.detach(), **HALF_VS_FP32_TOL[dtype])


def test_mixed_dtypes_in_one_group():
    shapes = [(40,), (3, 11), (17,), (9,)]
    dtypes = [torch.float32, torch.bfloat16, torch.float64, torch.float16]
    ours = [make_params([s], d, seed=i)[0] for i, (s, d) in enumerate(zip(shapes, dtypes))]
    ref = [make_params([s], d, seed=i)[0] for i, (s, d) in enumerate(zip(shapes, dtypes))]
    run(lambda p: fusedlr.SGD(p, lr=0.1, momentum=0.9, nesterov=True), ours)
    run(lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, fused=True), ref)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p.detach(), q.detach(), **EXACT_TOL[p.dtype])


def test_complex_params_step_as_real_views():
    ours = [torch.randn(13, dtype=torch.complex64, generator=torch.Generator().manual_seed(3)).requires_grad_()]
    ref = [ours[0].detach().clone().requires_grad_()]
    for opt in (fusedlr.SGD(ours, lr=0.1, momentum=0.9, weight_decay=0.1),
                torch.optim.SGD(ref, lr=0.1, momentum=0.9, weight_decay=0.1, foreach=False)):
        params = opt.param_groups[0]["params"]
        for t in range(3):
            params[0].grad = torch.randn(13, dtype=torch.complex64, generator=torch.Generator().manual_seed(t))
            opt.step()
    torch.testing.assert_close(ours[0].detach(), ref[0].detach(), rtol=1e-6, atol=1e-7)


_LEVELS = ["DEFAULT", "AVX2", "AVX512"]


def _cpu_lacks(level: str) -> bool:
    return _LEVELS.index(level.upper()) > _LEVELS.index(fusedlr._C.cpu_level())


@pytest.mark.parametrize("level", ["default", "avx2", "avx512"])
def test_every_simd_level_matches_torch(level):
    """The kernel is compiled per SIMD level and follows ATEN_CPU_CAPABILITY: run each level in a
    fresh process and compare with torch at the same level, in every loop the kernel compiles
    (a first step; nesterov, weight decay and prefetching fixed at compile time; maximize)."""
    if _cpu_lacks(level):
        # torch believes ATEN_CPU_CAPABILITY even where the CPU lacks the instructions, and its own
        # kernels would die of SIGILL in the child before ours run.
        pytest.skip(f"this CPU lacks {level.upper()} (its best level is {fusedlr._C.cpu_level()})")
    code = (
        "import torch, fusedlr, sys\n"
        "want = sys.argv[1].upper()\n"
        "got = fusedlr._C.cpu_kernel_level()\n"
        "torch_level = torch.backends.cpu.get_cpu_capability()\n"
        "assert got == want or (torch_level != want and want != 'DEFAULT'), (got, want, torch_level)\n"
        "options = [dict(dampening=0.2, weight_decay=0.01), dict(nesterov=True), dict(nesterov=True, weight_decay=0.01),\n"
        "           dict(), dict(maximize=True, weight_decay=0.01)]\n"
        "for dtype, opt in ((d, o) for d in (torch.float32, torch.float64, torch.bfloat16, torch.float16) for o in options):\n"
        "    sizes = (1, 15, 33, 1031, 600_000)  # (the last makes the call prefetch ahead)\n"
        "    ps = [torch.randn(n, dtype=torch.float64).to(dtype).requires_grad_() for n in sizes]\n"
        "    qs = [p.detach().clone().requires_grad_() for p in ps]\n"
        "    a = fusedlr.SGD(ps, lr=0.1, momentum=0.9, **opt)\n"
        "    b = torch.optim.SGD(qs, lr=0.1, momentum=0.9, **opt,\n"
        "                        **(dict(foreach=False) if dtype in (torch.float32, torch.float64) else dict(fused=True)))\n"
        "    for t in range(3):\n"
        "        for p, q in zip(ps, qs):\n"
        "            p.grad = torch.randn(p.shape, dtype=torch.float64).to(dtype); q.grad = p.grad.clone()\n"
        "        a.step(); b.step()\n"
        "    for p, q in zip(ps, qs):\n"
        "        tol = {torch.float32: dict(rtol=1e-6, atol=1e-7), torch.float64: dict(rtol=1e-13, atol=1e-15),\n"
        "               torch.bfloat16: dict(rtol=2.0**-7, atol=2.0**-14), torch.float16: dict(rtol=2.0**-10, atol=2.0**-20)}[dtype]\n"
        "        torch.testing.assert_close(p.detach(), q.detach(), **tol)\n"
        "print(got)\n"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY=level)
    out = subprocess.run([sys.executable, "-c", code, level], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    torch_level = out.stdout.strip()
    if torch.backends.cpu.get_cpu_capability() in ("AVX512", level.upper()) or level == "default":
        assert torch_level == level.upper()


def test_cpu_level_is_what_the_cpu_reports():
    """cpu_level() asks the CPU itself; on Linux /proc/cpuinfo lists the same instruction sets."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("needs an x86-64 Linux machine (/proc/cpuinfo)")
    flags = set(next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split(":")[1].split())
    avx2 = {"avx2", "fma", "f16c", "bmi1", "bmi2", "abm"} <= flags
    avx512 = avx2 and {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    assert fusedlr._C.cpu_level() == ("AVX512" if avx512 else "AVX2" if avx2 else "DEFAULT")
    assert _LEVELS.index(fusedlr._C.cpu_kernel_level()) <= _LEVELS.index(fusedlr._C.cpu_level())


@pytest.mark.parametrize("torch_level,cpu,expected", [
    ("AVX512", "AVX2", "AVX2"),  # ATEN_CPU_CAPABILITY=avx512 on an AVX2-only CPU (AMD Zen 2): no SIGILL
    ("AVX512", "DEFAULT", "DEFAULT"),
    ("AVX2", "AVX512", "AVX2"),  # ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU lowers ours too
    ("AVX512", "AVX512", "AVX512"),
    ("DEFAULT", "AVX512", "DEFAULT"),
    ("ZVECTOR", "AVX2", "DEFAULT"),  # a level this build does not know
])
def test_kernel_level_never_exceeds_the_cpu(torch_level, cpu, expected):
    assert fusedlr._C._choose_cpu_level(torch_level, cpu) == expected


def test_forced_level_above_the_cpu_runs_at_the_cpu_level():
    """ATEN_CPU_CAPABILITY above what the CPU has: our kernel stays at the CPU's level (on an
    AVX-512 machine the request is simply granted)."""
    code = "import fusedlr; print(fusedlr._C.cpu_kernel_level())"
    env = dict(os.environ, ATEN_CPU_CAPABILITY="avx512")
    if _cpu_lacks("avx512"):
        torch_alone = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True)
        if torch_alone.returncode < 0:  # killed by a signal: torch's own kernels, before ours are loaded
            pytest.skip(f"torch itself dies at import under ATEN_CPU_CAPABILITY=avx512 on this "
                        f"{fusedlr._C.cpu_level()} CPU (signal {-torch_alone.returncode})")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert _LEVELS.index(out.stdout.strip()) <= _LEVELS.index(fusedlr._C.cpu_level())


# --- float32 momentum for half parameters (momentum_dtype) ---------------------------------------


def float32_momentum_reference(params, steps, layout="contiguous", lr=0.05, **options):
    """torch.optim.SGD(foreach=False) on float32 copies of half ``params``: each step starts from
    the half values and gradients (exact in float32), keeps torch's float32 buffer, and rounds
    the parameter back once: what fusedlr.SGD(momentum_dtype=torch.float32) computes."""
    shadows = [p.detach().float().requires_grad_() for p in params]
    opt = torch.optim.SGD(shadows, lr=lr, foreach=False, **options)
    for t in range(steps):
        set_grads(params, t, layout)
        with torch.no_grad():
            for q, p in zip(shadows, params):
                q.copy_(p)
                q.grad = p.grad.float()
        opt.step()
        with torch.no_grad():
            for q, p in zip(shadows, params):
                p.copy_(q)
    return opt, shadows


def float32_momentum_sgd(params, **options):
    return fusedlr.SGD(params, lr=0.05, momentum_dtype=torch.float32, **options)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
def test_float32_momentum_is_torchs_float32_step_rounded_once(options, dtype, layout):
    shapes = {"contiguous": SHAPES, "transposed": [(257, 31), (7, 9), (33, 2)], "channels_last": [(2, 3, 4, 5)]}[layout]
    ours, ref = make_params(shapes, dtype, layout), make_params(shapes, dtype, layout)
    opt = run(lambda ps: float32_momentum_sgd(ps, **options), ours, steps=4, layout=layout)
    ref_opt, shadows = float32_momentum_reference(ref, 4, layout, **options)
    for a, e in zip(ours, ref):
        assert torch.equal(a.detach(), e.detach())
    if options["momentum"]:
        for p, q in zip(ours, shadows):
            buf = opt.state[p]["momentum_buffer"]
            assert buf.dtype == torch.float32 and buf.shape == p.shape
            assert torch.equal(buf, ref_opt.state[q]["momentum_buffer"])


def test_float32_momentum_under_a_grad_scale_and_with_flat_layouts():
    # grads scaled by 8 (a power of two: the unscaled grads are exact), the first step skipped
    # for inf; the flat layout's buffer is one float32 tensor.
    options = dict(momentum=0.9, weight_decay=1e-2, nesterov=True)
    ref = make_params(SHAPES[2:-1], torch.bfloat16)
    ref_opt, shadows = float32_momentum_reference(ref, 3, **options)
    for flat in (False, True):
        ours = make_params(SHAPES[2:-1], torch.bfloat16)
        opt = float32_momentum_sgd(ours, flat=flat, **options)
        opt.grad_scale, opt.found_inf = torch.tensor(8.0), torch.tensor(1.0)
        def scaled_grads(t):  # into the gradients the parameters have (a flat layout's views)
            fresh = make_params(SHAPES[2:-1], torch.bfloat16)
            set_grads(fresh, t)
            for p, q in zip(ours, fresh):
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad.copy_(q.grad * 8.0)
            return [q.grad for q in fresh]

        scaled_grads(0)
        opt.step()  # skipped: nothing moves, no buffer takes its first step
        opt.found_inf = torch.tensor(0.0)
        for t in range(3):
            expected = scaled_grads(t)
            opt.step()
            assert all(torch.equal(p.grad, e) for p, e in zip(ours, expected))  # unscaled, written back
        for a, e in zip(ours, ref):
            assert torch.equal(a.detach(), e.detach())
        bufs = [opt.state[p]["momentum_buffer"] for p in ours]
        assert all(b.dtype == torch.float32 for b in bufs)
        assert all(torch.equal(b, ref_opt.state[q]["momentum_buffer"]) for b, q in zip(bufs, shadows))
        if flat:
            assert len({b.untyped_storage().data_ptr() for b in bufs}) == 1
            assert opt._native.last_step_tensors(0) == 1


def test_float32_momentum_state_dict_loads_back_exactly_and_interchanges_with_torch():
    params = make_params([(33,), (4, 5)], torch.bfloat16)
    opt = run(lambda ps: float32_momentum_sgd(ps, momentum=0.9), params, steps=3)
    saved = copy.deepcopy(opt.state_dict())
    buffers = [opt.state[p]["momentum_buffer"].clone() for p in params]
    assert all(b.dtype == torch.float32 for b in buffers)
    # back into float32 momentum: exactly what was saved (torch's load alone would round it to bfloat16)
    again = float32_momentum_sgd(make_params([(33,), (4, 5)], torch.bfloat16), momentum=0.9)
    again.load_state_dict(saved)
    for p, b in zip(again.param_groups[0]["params"], buffers):
        assert torch.equal(again.state[p]["momentum_buffer"], b)
    # into torch.optim.SGD: torch casts the buffers to the parameters' dtype
    torch_opt = torch.optim.SGD(make_params([(33,), (4, 5)], torch.bfloat16), lr=0.05, momentum=0.9)
    torch_opt.load_state_dict(saved)
    for p, b in zip(torch_opt.param_groups[0]["params"], buffers):
        assert torch.equal(torch_opt.state[p]["momentum_buffer"], b.to(torch.bfloat16))
    # and a torch state into float32 momentum: its bfloat16 buffers widened, exactly
    back = float32_momentum_sgd(make_params([(33,), (4, 5)], torch.bfloat16), momentum=0.9)
    back.load_state_dict(torch_opt.state_dict())
    for p, b in zip(back.param_groups[0]["params"], buffers):
        buf = back.state[p]["momentum_buffer"]
        assert buf.dtype == torch.float32 and torch.equal(buf, b.to(torch.bfloat16).float())
    # deepcopy and pickle keep the option
    assert copy.deepcopy(opt).momentum_dtype == pickle.loads(pickle.dumps(opt)).momentum_dtype == torch.float32


def test_momentum_dtype_leaves_other_dtypes_alone_and_is_checked():
    params = make_params([(5,)], torch.float32) + make_params([(5,)], torch.float64)
    opt = run(lambda ps: float32_momentum_sgd(ps, momentum=0.9), params, steps=1)
    assert [opt.state[p]["momentum_buffer"].dtype for p in params] == [torch.float32, torch.float64]
    for bad in (torch.float16, torch.float64, "float32"):
        with pytest.raises(ValueError, match="momentum_dtype must be None"):
            fusedlr.SGD(params, lr=0.1, momentum_dtype=bad)
    # at the op: a float32 buffer is taken for a half parameter only
    p, g = torch.ones(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"momentum_buffers\[0\] does not match"):
        torch.ops.fusedlr.sgd_([p], [g], [torch.zeros(4)], [torch.zeros(())], 0.1, 0.9, 0.0, 0.0, False, False)
    p, g = torch.ones(4, dtype=torch.bfloat16), torch.ones(4, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"momentum_buffers\[0\] does not match"):
        torch.ops.fusedlr.sgd_([p], [g], [torch.zeros(4, dtype=torch.float64)], [torch.zeros(())], 0.1, 0.9, 0.0,
                               0.0, False, False)


def test_float32_momentum_keeps_torchs_buffers_where_torchs_reference_steps():
    # sparse gradients are stepped by torch's reference: its sparse buffer, also through a state_dict
    def train(opt, emb, steps):
        for _ in range(steps):
            emb(torch.tensor([1, 2, 2])).float().square().sum().backward()
            opt.step()
            opt.zero_grad()

    torch.manual_seed(0)
    emb = torch.nn.Embedding(10, 4, sparse=True).to(torch.bfloat16)
    resumed = copy.deepcopy(emb)
    opt = float32_momentum_sgd(emb.parameters(), momentum=0.9)
    train(opt, emb, 2)
    buf = opt.state[emb.weight]["momentum_buffer"]
    assert buf.is_sparse and buf.dtype == torch.bfloat16
    again = float32_momentum_sgd(resumed.parameters(), momentum=0.9)
    train(again, resumed, 2)
    again.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert again.state[resumed.weight]["momentum_buffer"].dtype == torch.bfloat16
    train(opt, emb, 2)
    train(again, resumed, 2)
    assert torch.equal(emb.weight, resumed.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA only")
def test_float32_momentum_is_refused_on_cuda_before_anything_steps():
    cpu = torch.ones(4, requires_grad=True)
    p = torch.ones(4, dtype=torch.bfloat16, device="cuda", requires_grad=True)
    with pytest.raises(NotImplementedError, match="CPU only"):
        float32_momentum_sgd([{"params": [cpu]}, {"params": [p]}], momentum=0.9)
    # at the op: refused before any tensor is written
    g = torch.ones_like(p)
    with pytest.raises(NotImplementedError, match="CPU only"):
        torch.ops.fusedlr.sgd_([p], [g], [torch.zeros(4, device="cuda")], [torch.zeros((), device="cuda")], 0.1,
                               0.9, 0.0, 0.0, False, False)
    assert torch.equal(p.detach(), torch.ones_like(p))


# --- optimizer behaviour ----------------------------------------------------------------------


def test_param_groups_with_different_options():
    def build(cls, **kw):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
        opt = cls(
            [
                {"params": model[0].parameters(), "lr": 0.2, "momentum": 0.9, "nesterov": True},
                {"params": [model[2].weight], "weight_decay": 0.1, "maximize": True},
                {"params": [model[2].bias], "momentum": 0.5, "dampening": 0.5},
            ],
            lr=0.05,
            **kw,
        )
        return model, opt

    (m1, o1), (m2, o2) = build(fusedlr.SGD), build(torch.optim.SGD, foreach=False)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    for _ in range(5):
        for m, o in ((m1, o1), (m2, o2)):
            o.zero_grad()
            m(x).pow(2).mean().backward()
            o.step()
    assert_params_equal(m1.parameters(), m2.parameters(), **EXACT_TOL[torch.float32])


def test_add_param_group_and_params_without_grad():
    a, b, frozen = (torch.randn(5, requires_grad=True) for _ in range(3))
    opt = fusedlr.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [b, frozen], "lr": 0.01})
    a.grad, b.grad = torch.ones(5), torch.ones(5)
    before = frozen.detach().clone()
    opt.step()
    assert torch.equal(frozen, before)
    assert frozen not in opt.state
    torch.testing.assert_close(b.detach(), before.new_tensor(0) + b.detach())  # b moved by lr*grad
    assert opt.param_groups[1]["momentum"] == 0.9  # defaults fill the new group


def test_torch_lr_scheduler_drives_it_through_group_lr():
    def train(cls, **kw):
        p = [torch.ones(10, requires_grad=True)]
        opt = cls(p, lr=0.1, momentum=0.9, **kw)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=20)
        for t in range(20):
            p[0].grad = torch.full((10,), 0.1 * (t + 1))
            opt.step()
            sched.step()
        return p[0], [g["momentum"] for g in opt.param_groups]

    (p1, m1), (p2, m2) = train(fusedlr.SGD), train(torch.optim.SGD, foreach=False)
    torch.testing.assert_close(p1.detach(), p2.detach(), **EXACT_TOL[torch.float32])
    assert m1 == m2  # momentum cycling reaches our group too


def test_external_lr_change_takes_effect_next_step():
    p, q = torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    o1, o2 = fusedlr.SGD([p], lr=1.0, momentum=0.5), torch.optim.SGD([q], lr=1.0, momentum=0.5, foreach=False)
    for lr in (1.0, 0.1, 0.0, 2.5):
        for o in (o1, o2):
            o.param_groups[0]["lr"] = lr
        p.grad, q.grad = torch.ones(4), torch.ones(4)
        o1.step()
        o2.step()
        torch.testing.assert_close(p.detach(), q.detach())


def test_tensor_lr():
    p, q = torch.ones(9, requires_grad=True), torch.ones(9, requires_grad=True)
    o1 = fusedlr.SGD([p], lr=torch.tensor(0.25), momentum=0.9)
    o2 = torch.optim.SGD([q], lr=torch.tensor(0.25), momentum=0.9, foreach=False)
    for t in range(3):
        p.grad, q.grad = torch.full((9,), t + 1.0), torch.full((9,), t + 1.0)
        o1.step()
        o2.step()
        o1.param_groups[0]["lr"].fill_(0.25 / (t + 2))
        o2.param_groups[0]["lr"].fill_(0.25 / (t + 2))
    torch.testing.assert_close(p.detach(), q.detach())


def test_closure_is_called_with_grad_enabled_and_its_loss_returned():
    model = torch.nn.Linear(3, 1)
    opt = fusedlr.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)

    def closure():
        opt.zero_grad()
        assert torch.is_grad_enabled()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0


def test_zero_grad_sets_grads_to_none():
    p = torch.ones(3, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1)
    p.grad = torch.ones(3)
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # nothing to do, nothing fails
    assert torch.equal(p.detach(), torch.ones(3))


def test_zero_grad_of_held_groups_drops_every_grad_and_follows_the_param_list():
    """zero_grad(set_to_none=True) through the groups held in C++: every parameter's grad dropped
    (a reference the user kept still holds it); after a parameter of the list is replaced, the new
    list's parameters are the ones cleared (torch's loop, as the held group no longer matches)."""
    params = [torch.ones(3, requires_grad=True) for _ in range(4)]
    opt = fusedlr.SGD([{"params": params[:2]}, {"params": params[2:], "momentum": 0.9}], lr=0.1)
    for _ in range(3):  # (group 1's first step adds state, after group 0 was held: held again on step 2)
        for p in params:
            p.grad = torch.full((3,), 0.5)
        opt.step()
    assert opt._native.last_step_tensors(0) == 2 and opt._native.last_step_tensors(1) == 2  # held
    kept = params[0].grad
    opt.zero_grad()
    assert all(p.grad is None for p in params) and torch.equal(kept, torch.full((3,), 0.5))
    stranger = torch.ones(3, requires_grad=True)
    stranger.grad = torch.ones(3)
    params[3].grad = torch.ones(3)
    opt.param_groups[1]["params"][1] = stranger
    opt.zero_grad()
    assert stranger.grad is None and params[3].grad is not None
    opt.zero_grad(set_to_none=False)  # (torch's path)
    for p in params:
        p.grad = torch.ones(3)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params[:3])


def test_sparse_gradients_fall_back_to_torch_reference():
    def train(cls):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(20, 4, sparse=True)
        opt = cls(emb.parameters(), lr=0.1, momentum=0.9)
        for t in range(3):
            opt.zero_grad()
            emb(torch.tensor([1, 5, 5, 7 + t])).sum().backward()
            opt.step()
        return emb.weight

    torch.testing.assert_close(train(fusedlr.SGD).detach(), train(torch.optim.SGD).detach())


# --- state_dict -------------------------------------------------------------------------------


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("direction", ["fusedlr_to_torch", "torch_to_fusedlr"])
def test_state_dict_interchanges_with_torch_sgd(direction):
    """k steps with one optimizer, state through torch.save/torch.load into the other, more steps:
    equal to never switching."""
    options = dict(lr=0.1, momentum=0.9, dampening=0.2, weight_decay=1e-3)
    first, second = (fusedlr.SGD, torch.optim.SGD) if direction == "fusedlr_to_torch" else (
        torch.optim.SGD, fusedlr.SGD)
    shapes = [(3, 4), (7,)]
    straight = make_params(shapes, torch.float32)
    o = torch.optim.SGD(straight, foreach=False, **options)
    for t in range(6):
        set_grads(straight, t)
        o.step()

    a = make_params(shapes, torch.float32)
    oa = first(a, **options)
    for t in range(3):
        set_grads(a, t)
        oa.step()
    sd = _roundtrip(oa.state_dict())
    b = [p.detach().clone().requires_grad_() for p in a]
    ob = second(b, **options)
    ob.load_state_dict(sd)
    for t in range(3, 6):
        set_grads(b, t)
        ob.step()
    assert_params_equal(b, straight, **EXACT_TOL[torch.float32])
    assert ob.param_groups[0]["momentum"] == 0.9


def test_loaded_state_dict_with_wrong_buffer_shape_is_rejected():
    p = torch.ones(4, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(4)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["momentum_buffer"] = torch.ones(5)
    with pytest.raises(ValueError, match="momentum_buffer has shape"):
        fusedlr.SGD([torch.ones(4, requires_grad=True)], lr=0.1, momentum=0.9).load_state_dict(sd)


# --- AMP --------------------------------------------------------------------------------------


def test_grad_scaler_first_step_inf_initialises_buffer_on_first_real_step():
    """GradScaler skips the first step (inf grads). Ours initialises the momentum buffer on the
    first step that runs; torch's non-fused SGD, which the scaler never calls on the inf step, is
    the reference. (torch's fused path allocates the buffer with empty_like before the kernel and
    then treats it as initialised on the next step.)"""
    options = dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=1e-2)

    def train(cls, **kw):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 4)
        opt = cls(model.parameters(), **options, **kw)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(2))
        for t in range(6):
            opt.zero_grad()
            loss = model(x).pow(2).mean() * (float("inf") if t == 0 else 1.0)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        return model, opt, scaler

    m1, o1, s1 = train(fusedlr.SGD)
    m2, o2, s2 = train(torch.optim.SGD, foreach=False)
    assert s1.get_scale() == s2.get_scale() == 2.0**9 * 4  # one backoff, then growth twice
    assert_params_equal(m1.parameters(), m2.parameters(), **EXACT_TOL[torch.float32])
    for p in m1.parameters():
        assert o1.state[p]["step"].item() == 5  # the skipped step did not count


def test_found_inf_skips_everything_and_grad_scale_unscales_in_place():
    p = torch.ones(6, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.5, momentum=0.9)
    p.grad = torch.full((6,), 8.0)
    opt.grad_scale, opt.found_inf = torch.tensor(4.0), torch.tensor(1.0)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(6)) and torch.equal(p.grad, torch.full((6,), 8.0))
    assert opt.state[p]["step"].item() == 0
    opt.found_inf = torch.tensor(0.0)
    opt.step()
    assert torch.equal(p.grad, torch.full((6,), 2.0))  # unscaled, written back
    torch.testing.assert_close(p.detach(), torch.full((6,), 1.0 - 0.5 * 2.0))
    assert opt.state[p]["step"].item() == 1


def test_state_dict_leaves_out_buffers_that_never_stepped():
    p = torch.ones(3, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    p.grad = torch.ones(3)
    opt.found_inf = torch.tensor(1.0)
    opt.step()
    del opt.found_inf
    assert opt.state_dict()["state"] == {}  # torch would not have a buffer either


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(lr=-0.1),
        dict(lr=0.1, momentum=-0.5),
        dict(lr=0.1, weight_decay=-1e-4),
        dict(lr=0.1, nesterov=True),
        dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True),
        dict(lr=torch.tensor([0.1, 0.2])),
    ],
    ids=["lr", "momentum", "weight_decay", "nesterov-no-momentum", "nesterov-dampening", "lr-tensor-size"],
)
def test_invalid_arguments_raise_torchs_error(kwargs):
    params = [torch.ones(2, requires_grad=True)]
    with pytest.raises(ValueError) as torch_error:
        torch.optim.SGD(params, **kwargs)
    with pytest.raises(ValueError) as our_error:
        fusedlr.SGD(params, **kwargs)
    assert str(our_error.value) == str(torch_error.value)


def test_invalid_group_options_raise_in_add_param_group():
    opt = fusedlr.SGD([torch.ones(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        opt.add_param_group({"params": [torch.ones(2, requires_grad=True)], "lr": -1.0})


def test_empty_parameter_list_raises_like_torch():
    with pytest.raises(ValueError, match="empty parameter list"):
        fusedlr.SGD([], lr=0.1)


def test_differentiable_steps_through_torchs_reference_so_gradients_flow_through_the_step():
    results = []
    for cls in (torch.optim.SGD, fusedlr.SGD):
        start = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
        p = start.clone()  # a non-leaf, as torch's own differentiable tests use
        opt = cls([p], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False, differentiable=True)
        for k in range(3):
            p.grad = (p * (k + 1.0)).detach().requires_grad_() * 1.0
            opt.step()
        (p**2).sum().backward()
        results.append((p.detach().clone(), start.grad.clone()))
    assert torch.equal(results[1][0], results[0][0]) and torch.equal(results[1][1], results[0][1])
    with pytest.raises(RuntimeError, match="in-kernel schedule cannot be combined with differentiable"):
        fusedlr.SGD([torch.ones(2)], lr=0.1, differentiable=True, schedule=fusedlr.schedules.cosine(10))


# --- compile ------------------------------------------------------------------------------------


@pytest.mark.slow
# Dynamo itself reads .grad of the non-leaf `loss` when it resumes after backward().
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")
def test_torch_compile_of_a_training_step():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    ref_model = copy.deepcopy(model)
    opt = fusedlr.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))

    def step(m, o):
        o.zero_grad()
        loss = m(x).pow(2).mean()
        loss.backward()
        o.step()
        return loss

    compiled = torch.compile(step, backend="aot_eager")
    for _ in range(3):
        compiled(model, opt)
        step(ref_model, ref_opt)
    assert_params_equal(model.parameters(), ref_model.parameters(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", devices())
def test_optimizer_step_compiles_without_graph_break(device):
    """The op is traced through its fake implementation: opt.step() becomes one graph."""
    torch._dynamo.reset()
    params = [torch.randn(5, 3, device=device, requires_grad=True), torch.randn(3, device=device, requires_grad=True)]
    ref = [p.detach().clone().requires_grad_() for p in params]
    for p in params + ref:
        p.grad = torch.ones_like(p)
    opt = fusedlr.SGD(params, lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(ref, lr=0.1, momentum=0.9, foreach=False)
    opt.step()  # state exists before compiling
    ref_opt.step()

    @torch.compile(backend="eager", fullgraph=True)
    def compiled_step():
        opt.step()

    for _ in range(2):
        compiled_step()
        ref_opt.step()
    assert_params_equal(params, ref, **EXACT_TOL[torch.float32])


# --- the native fast path (group tensors held in C++ between steps) ---------------------------


def _train_pair(mutations, steps=6, **options):
    """Step fusedlr.SGD and torch.optim.SGD side by side; mutations[t](opt, params) runs before step t."""
    results = []
    for cls, kw in ((fusedlr.SGD, {}), (torch.optim.SGD, dict(foreach=False))):
        params = make_params([(5, 3), (7,), (4,)], torch.float32)
        opt = cls(params, **options, **kw)
        for t in range(steps):
            set_grads(params, t)
            if t in mutations:
                mutations[t](opt, params)
            opt.step()
        results.append(params)
    assert_params_equal(results[0], results[1], **EXACT_TOL[torch.float32])


def test_param_that_gets_its_first_grad_later_is_stepped():
    def no_grad_for_last(opt, params):
        params[2].grad = None

    _train_pair({0: no_grad_for_last, 1: no_grad_for_last, 2: no_grad_for_last}, lr=0.1, momentum=0.9)


def test_momentum_switched_on_mid_training():
    def momentum_on(opt, params):
        opt.param_groups[0]["momentum"] = 0.9

    _train_pair({3: momentum_on}, lr=0.1, momentum=0.0)


def test_param_group_added_mid_training():
    def add_group(opt, params):
        extra = torch.ones(6, requires_grad=True)
        extra.grad = torch.full((6,), 0.5)
        opt.add_param_group({"params": [extra], "lr": 0.3})
        opt._extra = extra

    results = []
    for cls in (fusedlr.SGD, lambda p, **kw: torch.optim.SGD(p, foreach=False, **kw)):
        params = make_params([(5,)], torch.float32)
        opt = cls(params, lr=0.1, momentum=0.9)
        for t in range(5):
            set_grads(params, t)
            if t == 2:
                add_group(opt, params)
            opt.step()
        results.append(params + [opt._extra])
    assert_params_equal(results[0], results[1], **EXACT_TOL[torch.float32])


def test_load_state_dict_mid_training_replaces_cached_buffers():
    def reload(opt, params):
        sd = _roundtrip(opt.state_dict())
        for s in sd["state"].values():
            s["momentum_buffer"].mul_(0.5)  # a different state than the live one
        opt.load_state_dict(sd)

    _train_pair({3: reload}, lr=0.1, momentum=0.9, dampening=0.1)


def test_buffers_modified_in_place_by_the_user_are_seen():
    def zero_buffers(opt, params):
        for p in params:
            opt.state[p]["momentum_buffer"].zero_()

    _train_pair({3: zero_buffers}, lr=0.1, momentum=0.9)


def test_buffers_replaced_by_assignment_are_seen():
    def replace_buffers(opt, params):
        for p in params:
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)

    _train_pair({3: replace_buffers}, lr=0.1, momentum=0.9)


def test_state_reset_by_the_user_restarts_momentum():
    def reset(opt, params):
        opt.state = defaultdict(dict)

    _train_pair({3: reset}, lr=0.1, momentum=0.9)


def test_optimizer_deepcopies_and_pickles():
    params = make_params([(4,)], torch.float32)
    opt = fusedlr.SGD(params, lr=0.1, momentum=0.9)
    set_grads(params, 0)
    opt.step()
    opt.step()
    clone = copy.deepcopy(opt)
    assert torch.equal(clone.state[clone.param_groups[0]["params"][0]]["momentum_buffer"],
                       opt.state[params[0]]["momentum_buffer"])
    buf = io.BytesIO()
    torch.save(opt, buf)  # the whole object, as some training scripts do
    buf.seek(0)
    restored = torch.load(buf, weights_only=False)
    restored_params = restored.param_groups[0]["params"]
    assert torch.equal(restored.state[restored_params[0]]["momentum_buffer"], opt.state[params[0]]["momentum_buffer"])
    restored_params[0].grad = params[0].grad.clone()
    restored.step()
    opt.step()
    assert torch.equal(restored_params[0], params[0])


def test_step_hooks_and_profiler_range_work_like_torch():
    p = torch.ones(3, requires_grad=True)
    opt = fusedlr.SGD([p], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global"))
    try:
        p.grad = torch.ones(3)
        opt.step()
    finally:
        handle.remove()
    assert calls == ["global", "pre", "post"]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    assert any(e.name == "Optimizer.step#SGD.step" for e in prof.events())


# --- what can change in place between steps: the cache must never give a number torch would not ---


def _side_by_side(build, mutate, steps=5):
    """Run build(cls) -> (opt, tensors) for fusedlr.SGD and torch.optim.SGD, stepping `steps` times
    with mutate(opt, tensors, t) before each step; the tensors must end equal."""
    results = []
    for cls in (fusedlr.SGD, lambda *a, **k: torch.optim.SGD(*a, foreach=False, **k)):
        opt, tensors = build(cls)
        for t in range(steps):
            mutate(opt, tensors, t)
            opt.step()
        results.append([x.detach().clone() for x in tensors])
    for ours, ref in zip(*results):
        assert torch.equal(ours, ref), (ours, ref)


def test_a_parameter_swapped_in_place_in_the_group_list_is_stepped():
    # Was a = -2, b = 0 (the cached list still held a): the list kept its identity and length.
    def build(cls):
        a, b = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
        return cls([a], lr=1.0), [a, b]

    def mutate(opt, tensors, t):
        for x in tensors:
            x.grad = torch.ones(1)
        if t == 1:
            opt.param_groups[0]["params"][0] = tensors[1]

    _side_by_side(build, mutate, steps=2)


@pytest.mark.parametrize("change", ["reverse", "replace-group", "replace-list", "data"])
def test_in_place_changes_of_groups_and_params_are_seen(change):
    def build(cls):
        params = make_params([(5, 3), (7,), (4,)], torch.float32)
        return cls(params, lr=0.1, momentum=0.9, weight_decay=0.01), params

    def mutate(opt, params, t):
        set_grads(params, t)
        if t != 2:
            return
        group = opt.param_groups[0]
        if change == "reverse":
            group["params"].reverse()
        elif change == "replace-group":
            opt.param_groups[0] = {**group, "params": [params[2], params[0]], "lr": 0.05}
        elif change == "replace-list":
            group["params"] = [params[1]]
        else:
            params[1].data = params[1].data * 2  # same shape, new storage

    _side_by_side(build, mutate)


@pytest.mark.usefixtures("three_threads")
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])  # transposed: stepped through a staged copy
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_a_parameter_listed_twice_warns_and_steps_like_torch(momentum, layout):
    # Was: two threads updated the same memory; results differed run to run by up to 1.4.
    runs = []
    for cls in (fusedlr.SGD, fusedlr.SGD, lambda *a, **k: torch.optim.SGD(*a, foreach=False, **k)):
        p = torch.randn(350, 200, generator=torch.Generator().manual_seed(0))
        p = (p.t() if layout == "transposed" else p).requires_grad_()
        with pytest.warns(UserWarning, match="duplicate parameters"):  # torch's own warning
            opt = cls([p, p], lr=0.1, momentum=momentum, weight_decay=0.01)
        for t in range(4):
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(t + 1))
            opt.step()
        runs.append(p.detach().clone())
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@pytest.mark.usefixtures("three_threads")
def test_overlapping_views_as_parameters_step_in_order_like_torch():
    runs = []
    for cls in (fusedlr.SGD, lambda *a, **k: torch.optim.SGD(*a, foreach=False, **k)):
        flat = torch.randn(90_000, generator=torch.Generator().manual_seed(0))
        params = [torch.nn.Parameter(flat[:60_000]), torch.nn.Parameter(flat[30_000:])]  # views of `flat`
        opt = cls(params, lr=0.1, momentum=0.9)
        for t in range(3):
            for q in params:
                q.grad = torch.randn(q.shape, generator=torch.Generator().manual_seed(t))
            opt.step()
        runs.append(flat.clone())
    assert torch.equal(runs[0], runs[1])


@pytest.mark.usefixtures("three_threads")
def test_two_parameters_given_one_momentum_buffer_step_in_order_like_torch():
    """A checkpoint can hand two parameters one buffer (torch.load keeps shared storage): was a
    race, up to 0.6 off torch and different run to run."""
    runs = []
    for cls in (fusedlr.SGD, fusedlr.SGD, lambda *a, **k: torch.optim.SGD(*a, foreach=False, **k)):
        params = make_params([(200_000,), (200_000,)], torch.float32)
        opt = cls(params, lr=0.1, momentum=0.9)
        shared = torch.randn(200_000, generator=torch.Generator().manual_seed(7))
        sd = opt.state_dict()
        sd["state"] = {0: {"momentum_buffer": shared}, 1: {"momentum_buffer": shared}}
        opt.load_state_dict(sd)
        buffers = [opt.state[p]["momentum_buffer"] for p in params]
        assert buffers[0].data_ptr() == buffers[1].data_ptr()
        for t in range(3):
            set_grads(params, t)
            opt.step()
        runs.append([p.detach().clone() for p in params] + [buffers[0].clone()])
    for ours in runs[:2]:
        assert all(torch.equal(a, b) for a, b in zip(ours, runs[2]))


def test_written_tensors_overlap_check_of_the_op():
    """The op itself steps overlapping tensors in list order (one thread), so any caller is safe."""
    base = torch.zeros(40_000)
    params, grads = [base, base], [torch.ones(40_000), torch.full((40_000,), 2.0)]
    torch.ops.fusedlr.sgd_(params, grads, [], [], 0.5, 0.0, 0.0, 0.0, False, False)
    assert torch.equal(base, torch.full((40_000,), -1.5))


@pytest.mark.parametrize("order", ["increasing", "decreasing", "shuffled"])
def test_overlap_check_finds_a_repeated_view_in_any_address_order(order):
    """The op's overlap check walks runs already in address order (few runs) or sorts (many), and
    remembers its last calls' answers: a view listed twice, once at the start of each thread's
    range, is found in every order, also right after a call whose lists differ from it in that one
    tensor (answered disjoint). Missed, both threads would update it at once (a lost update)."""
    m, k = 200_000, 40
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # thread 1's range starts at the second listing of `a`
    try:
        for overlapping in (False, True, False, True):
            flat = torch.zeros(4 * m)
            a, other = flat[:m], flat[3 * m:]
            b, c = list(flat[m:2 * m].split(m // k)), list(flat[2 * m:3 * m].split(m // k))
            if order == "decreasing":
                b, c = b[::-1], c[::-1]
            elif order == "shuffled":
                gen = torch.Generator().manual_seed(0)
                b = [b[i] for i in torch.randperm(k, generator=gen)]
                c = [c[i] for i in torch.randperm(k, generator=gen)]
            params = [a, *b, a if overlapping else other, *c]
            grads = list(torch.ones(4 * m).split([t.numel() for t in params]))
            grads[k + 1].fill_(2.0)
            torch.ops.fusedlr.sgd_(params, grads, [], [], 0.5, 0.0, 0.0, 0.0, False, False)
            expected = torch.full((4 * m,), -0.5)
            if overlapping:
                expected[:m], expected[3 * m:] = -1.5, 0.0
            else:
                expected[3 * m:] = -1.0
            assert torch.equal(flat, expected), (order, overlapping)
    finally:
        torch.set_num_threads(before)


def test_one_optimizer_stepped_from_several_threads_does_not_crash():
    """A user error, but never a crash (was SIGSEGV/SIGABRT in 5 of 8 runs): the native group's
    steps take turns. Run in a child process so that a crash fails this test, not the session."""
    code = (
        "import threading, torch, fusedlr\n"
        "ps = [torch.randn(1000, requires_grad=True) for _ in range(50)]\n"
        "for p in ps: p.grad = torch.randn(1000)\n"
        "opt = fusedlr.SGD(ps, lr=0.001, momentum=0.9)\n"
        "opt.step()\n"
        "errors = []\n"
        "def work():\n"
        "    try:\n"
        "        for _ in range(200): opt.step()\n"
        "    except Exception as e: errors.append(repr(e))\n"
        "threads = [threading.Thread(target=work) for _ in range(4)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert not errors, errors\n"
        "assert all(torch.isfinite(p).all() for p in ps)\n"
        "print('ok')\n"
    )
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


def test_two_optimizers_in_two_threads_match_sequential_runs():
    import threading

    def train(seed, out):
        params = make_params([(300, 200), (200,), (50, 300)], torch.float32, seed=seed)
        opt = fusedlr.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
        for t in range(100):
            set_grads(params, t)
            opt.step()
        out.append([p.detach().clone() for p in params])

    alone = [[], []]
    for seed in (0, 1):
        train(seed, alone[seed])
    together = [[], []]
    threads = [threading.Thread(target=train, args=(seed, together[seed])) for seed in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed in (0, 1):
        assert all(torch.equal(a, b) for a, b in zip(alone[seed][0], together[seed][0]))


@pytest.mark.parametrize("tamper, error, message", [
    (lambda sd: sd["param_groups"][0].pop("momentum"), ValueError, "loaded param group 0 has no 'momentum'"),
    (lambda sd: sd["param_groups"][0].update(lr="fast"), TypeError, "lr must be a number, got str"),
    (lambda sd: sd["param_groups"][0].update(dampening=float("inf")), ValueError, "Invalid dampening value: inf"),
    (lambda sd: sd["param_groups"][0].update(schedule_state=torch.zeros(3, device="meta")), TypeError,
     "schedule_state cannot be read"),
    (lambda sd: sd["state"][0].update(step=float("nan")), ValueError, "step must be a finite count"),
    (lambda sd: sd["state"][0].update(step="x"), TypeError, "step must be a number"),
])
def test_a_refused_state_dict_leaves_the_optimizer_as_it_was(tamper, error, message):
    params = make_params([(5,), (3,)], torch.float32)
    opt = fusedlr.SGD(params, lr=0.1, momentum=0.9, schedule=fusedlr.schedules.cosine(100))
    set_grads(params, 0)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    tamper(sd)
    before = (repr(opt), [opt.state[p]["momentum_buffer"].clone() for p in params])
    with pytest.raises(error, match=message):
        opt.load_state_dict(sd)
    assert repr(opt) == before[0]
    assert all(torch.equal(opt.state[p]["momentum_buffer"], b) for p, b in zip(params, before[1]))
    set_grads(params, 1)
    opt.step()  # still a working optimizer
    assert all(torch.isfinite(p).all() for p in params)


def test_optimizer_state_takes_any_value_and_round_trips_it_as_torch():
    # torch's state is a defaultdict(dict): its own hook tests write state["test"] = 1.
    got = []
    for cls in (torch.optim.SGD, fusedlr.SGD):
        p = torch.nn.Parameter(torch.ones(3))
        p.grad = torch.ones(3)
        opt = cls([p], lr=0.1, momentum=0.9)
        opt.step()
        opt.state["epoch"] = 7
        opt.state["notes"] = {"best": 0.5}
        buf = io.BytesIO()
        torch.save(opt.state_dict(), buf)
        buf.seek(0)
        q = torch.nn.Parameter(torch.ones(3))
        other = cls([q], lr=0.1, momentum=0.9)
        other.load_state_dict(torch.load(buf, weights_only=True))
        for copy_of in (other, copy.deepcopy(other), pickle.loads(pickle.dumps(other))):
            assert copy_of.state["epoch"] == 7 and copy_of.state["notes"] == {"best": 0.5}
        q.grad = torch.ones(3)
        other.step()  # the extra entries do not disturb the step
        got.append(q.detach().clone())
    assert torch.equal(got[0], got[1])


def test_meta_parameters_step_as_torchs_default_path_does():
    """Decided: meta tensors hold no numbers, so a step on them is a shape-only no-op that creates
    meta momentum buffers, as torch.optim.SGD's default (for-loop) path does; `fused=True` is
    ignored here as everywhere (torch's own fused path refuses meta at construction)."""
    layouts = []
    for cls in (torch.optim.SGD, fusedlr.SGD):
        p = torch.nn.Parameter(torch.empty(4, 3, device="meta"))
        p.grad = torch.empty(4, 3, device="meta")
        opt = cls([p], lr=0.1, momentum=0.9)
        opt.step()
        buf = opt.state[p]["momentum_buffer"]
        layouts.append((buf.device.type, tuple(buf.shape)))
        # Materialised later (deferred init): the optimizer steps the real tensors.
        real = torch.nn.Parameter(torch.ones(4, 3))
        real.grad = torch.ones(4, 3)
        opt.param_groups[0]["params"] = [real]
        opt.state.clear()
        opt.step()
        assert torch.allclose(real.detach(), torch.full((4, 3), 0.9))
    assert layouts[0] == layouts[1] == ("meta", (4, 3))


@pytest.mark.parametrize("n", [1, 31, 32, 33, 1000, 4099])
def test_bfloat16_step_is_the_float32_step_rounded_once(n):
    """bfloat16 is computed in float32 and rounded to nearest even once per value (the kernel's own
    conversion, words split into even and odd elements): bit for bit the float32 kernel's result on
    the same values rounded by torch, specials and tails included."""
    g = torch.Generator().manual_seed(n)

    def values():
        x = torch.randn(n, generator=g) * torch.logspace(-40, 30, n, base=2.0)[torch.randperm(n, generator=g)]
        specials = torch.tensor([0.0, -0.0, float("inf"), -float("inf"), 1e-39, -3e-40, 1.00390625, 1.01171875])
        x[: min(n, len(specials))] = specials[: min(n, len(specials))]
        return x.to(torch.bfloat16)

    p16, g16 = values().requires_grad_(), values()
    p32 = p16.detach().float().requires_grad_()
    opt16 = fusedlr.SGD([p16], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)
    opt32 = fusedlr.SGD([p32], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)
    for _ in range(3):
        p16.grad, p32.grad = g16, g16.float()
        opt16.step()
        opt32.step()
        for a, b in ((p16, p32), (opt16.state[p16]["momentum_buffer"], opt32.state[p32]["momentum_buffer"])):
            expected = b.detach().to(torch.bfloat16)
            same = (a.detach().view(torch.int16) == expected.view(torch.int16)) | (a.isnan() & expected.isnan())
            assert bool(same.all()), (a[~same], expected[~same])
            b.data.copy_(expected.float())  # the float32 run continues from the rounded values
        g16 = values()
