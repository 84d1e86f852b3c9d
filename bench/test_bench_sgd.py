"""fusedlr.SGD vs torch.optim.SGD (for-loop, foreach, fused, compiled) on model-shaped parameters."""

from __future__ import annotations

import statistics

import pytest
import torch

import fusedlr
from models import SHAPE_SETS, make_params
from roofline import bytes_per_element, last_level_cache_bytes, working_set_bytes

CONTENDERS = {
    "fusedlr": lambda p, kw: fusedlr.SGD(p, **kw),
    "fusedlr-flat": lambda p, kw: fusedlr.SGD(p, flat=True, **kw),
    "torch-fused": lambda p, kw: torch.optim.SGD(p, fused=True, **kw),
    "torch-foreach": lambda p, kw: torch.optim.SGD(p, foreach=True, **kw),
    "torch-for-loop": lambda p, kw: torch.optim.SGD(p, foreach=False, **kw),
}
OPTIONS = {
    "momentum": dict(lr=0.01, momentum=0.9),
    "wd-nesterov": dict(lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True),
}
SETS = ["mlp", "resnet50", "gpt2s", "2000x1k", pytest.param("64M", marks=pytest.mark.slow)]


def _bench(benchmark, roofline, set_name, dtype, options, contender, step_fn=None, momentum_dtype=None):
    params = make_params(SHAPE_SETS[set_name](), dtype)
    extra = {"momentum_dtype": momentum_dtype} if momentum_dtype is not None else {}
    opt = CONTENDERS[contender](params, dict(OPTIONS[options], **extra))
    step = step_fn(opt) if step_fn else opt.step
    step()  # state allocation outside the timing
    numel = sum(p.numel() for p in params)
    case_dtype = str(dtype).removeprefix("torch.") + (f"/{str(momentum_dtype).removeprefix('torch.')}"
                                                      if momentum_dtype is not None else "")
    benchmark.group = f"sgd {set_name} {case_dtype} {options}"
    benchmark.extra_info.update(set=set_name, dtype=case_dtype, options=options, contender=contender, numel=numel,
                                bytes_per_step=numel * bytes_per_element(dtype, momentum_dtype=momentum_dtype),
                                in_llc=working_set_bytes(numel, dtype, momentum_dtype=momentum_dtype)
                                <= last_level_cache_bytes())
    around = [] if benchmark.disabled else roofline.sample_gbs(3)
    benchmark(step)
    if around:  # the roofline right before and right after this case
        benchmark.extra_info["roofline_gbs"] = statistics.median(around + roofline.sample_gbs(3))


@pytest.mark.parametrize("contender", list(CONTENDERS))
@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("set_name", SETS)
def test_sgd_step(benchmark, roofline, set_name, dtype, options, contender):
    _bench(benchmark, roofline, set_name, dtype, options, contender)


@pytest.mark.parametrize("contender", ["fusedlr", "fusedlr-flat"])
@pytest.mark.parametrize("set_name", SETS)
def test_sgd_step_float32_momentum(benchmark, roofline, set_name, contender):
    """bfloat16 parameters with float32 momentum (fusedlr.SGD(momentum_dtype=torch.float32)): 14
    bytes per element. torch has no such step: the row has fusedlr's columns only."""
    _bench(benchmark, roofline, set_name, torch.bfloat16, "momentum", contender, momentum_dtype=torch.float32)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("set_name", ["mlp", "2000x1k"])
def test_sgd_step_torch_compiled(benchmark, roofline, set_name):
    def compiled(opt):
        return torch.compile(opt.step, backend="inductor")

    _bench(benchmark, roofline, set_name, torch.float32, "momentum", "torch-for-loop", step_fn=compiled)
    benchmark.extra_info["contender"] = "torch-compiled"
