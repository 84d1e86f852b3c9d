"""Randomized: any valid combination of options, shapes, layouts, dtypes, steps, AMP scales and
skipped steps gives torch.optim.SGD's numbers."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fusedlr
from conftest import DTYPES, EXACT_TOL

# derandomize: CI sees the same examples every run; database=None: nothing written to the tree.
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None)

small_shapes = st.lists(st.integers(0, 9), max_size=3).map(tuple)
# Longer than every SIMD width, with tails.
large_shapes = st.sampled_from([(1031,), (17, 33), (2, 3, 65)])
shapes = st.lists(st.one_of(small_shapes, small_shapes, large_shapes), min_size=1, max_size=5)
unit = st.floats(0.0, 1.0, allow_nan=False, allow_subnormal=False)


@st.composite
def sgd_options(draw):
    momentum = draw(st.one_of(st.just(0.0), unit))
    nesterov = momentum > 0 and draw(st.booleans())
    dampening = 0.0 if momentum == 0 or nesterov else draw(st.one_of(st.just(0.0), unit))
    return dict(
        lr=draw(st.floats(0.0, 2.0, allow_nan=False, allow_subnormal=False)),
        momentum=momentum,
        dampening=dampening,
        weight_decay=draw(st.one_of(st.just(0.0), st.floats(0.0, 0.5, allow_nan=False, allow_subnormal=False))),
        nesterov=nesterov,
        maximize=draw(st.booleans()),
    )


def make(shapes, dtype, transposed, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, s in enumerate(shapes):
        t = torch.randn(s, generator=g, dtype=torch.float64).to(dtype)
        if transposed[i % len(transposed)] and t.dim() >= 2:
            t = t.transpose(0, 1).contiguous().transpose(0, 1)
        out.append(t.requires_grad_())
    return out


@PROPERTY_SETTINGS
@given(
    shapes=shapes,
    dtype=st.sampled_from(DTYPES),
    options=sgd_options(),
    transposed=st.lists(st.booleans(), min_size=1, max_size=3),
    # per step: None = a plain step, a power of two = a GradScaler scale, "skip" = found_inf
    amp=st.lists(st.one_of(st.none(), st.sampled_from([1.0, 4.0, 2.0**-3, 2.0**10]), st.just("skip")),
                 min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_random_steps_match_torch(shapes, dtype, options, transposed, amp, seed):
    ours, ref = make(shapes, dtype, transposed, seed), make(shapes, dtype, transposed, seed)
    opt = fusedlr.SGD(ours, **options)
    # float32/float64: torch's per-op path; half types: its fused path (float32 math, as ours).
    kw = dict(foreach=False) if dtype in (torch.float32, torch.float64) else dict(fused=True)
    ref_opt = torch.optim.SGD(ref, **options, **kw)
    if dtype == torch.float16:
        amp = [a if a not in (2.0**10, 2.0**-3) else 4.0 for a in amp]  # no float16 overflow or subnormals
    for t, scale in enumerate(amp):
        g = torch.Generator().manual_seed(seed + 7919 * (t + 1))
        for p, q in zip(ours, ref):
            grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype)
            if dtype in (torch.float16, torch.bfloat16):
                # torch's fused CPU step walks param and grad as flat memory: a transposed param
                # with a contiguous grad gets the wrong grad elements (torch 2.14). Give the
                # reference grads in the param's layout; float32/float64 keep the mismatch.
                grad = torch.empty_like(p).copy_(grad)
            q.grad = grad.clone()
            p.grad = torch.full_like(grad, float("nan")) if scale == "skip" else grad * (scale or 1.0)
        if scale is None:
            opt.__dict__.pop("grad_scale", None)
            opt.__dict__.pop("found_inf", None)
        else:
            opt.grad_scale = torch.tensor(1.0 if scale == "skip" else scale)
            opt.found_inf = torch.tensor(1.0 if scale == "skip" else 0.0)
        opt.step()
        if scale != "skip":  # GradScaler does not call a non-fused optimizer on a skipped step
            ref_opt.step()
    for p, q in zip(ours, ref):
        assert p.stride() == q.stride()
        torch.testing.assert_close(p.detach(), q.detach(), **EXACT_TOL[dtype])
        if options["momentum"] and q in ref_opt.state:
            torch.testing.assert_close(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"],
                                       **EXACT_TOL[dtype])
    assert opt.state_dict()["state"].keys() == ref_opt.state_dict()["state"].keys()
