"""CUDA bandwidth of the fused step: GB/s of fusedlr.SGD.step() against a device-to-device copy
and against torch.optim.SGD(fused=True), timed with CUDA events. Run by bench/gpu_check.sh."""

from __future__ import annotations

import statistics

import torch

import fusedlr
from fusedlr import schedules

BYTES = {torch.float32: 20, torch.bfloat16: 10}  # read p, g, b; write p, b


def cuda_time(fn, iters=20, warmup=3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


def params(shapes, dtype):
    ps = [torch.randn(s, device="cuda", dtype=dtype, requires_grad=True) for s in shapes]
    for p in ps:
        p.grad = torch.randn_like(p) * 1e-3
    return ps


def main() -> None:
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, fusedlr {fusedlr.__version__}")
    n = 256 * 2**20
    src, dst = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
    t_copy = cuda_time(lambda: dst.copy_(src))
    copy_gbs = 8 * n / t_copy / 1e9
    print(f"device-to-device copy of {n:,} floats: {copy_gbs:,.0f} GB/s (read + write)")
    cases = {
        "one 256M tensor": [(n,)],
        "2000 x 100k": [(100_000,)] * 2000,
        "2000 x 1k": [(1000,)] * 2000,
    }
    print(f"{'case':18s} {'dtype':9s} {'fusedlr':>10s} {'GB/s':>7s} {'% copy':>7s} {'+schedule':>10s} "
          f"{'torch fused':>12s} {'ratio':>6s}")
    for name, shapes in cases.items():
        for dtype in (torch.float32, torch.bfloat16):
            numel = sum(torch.Size(s).numel() for s in shapes)
            ours = fusedlr.SGD(params(shapes, dtype), lr=0.01, momentum=0.9)
            sched = fusedlr.SGD(params(shapes, dtype), lr=0.01, momentum=0.9,
                                schedule=schedules.warmup(schedules.cosine(T_max=10**6), steps=1000))
            ref = torch.optim.SGD(params(shapes, dtype), lr=0.01, momentum=0.9, fused=True)
            t_ours, t_sched, t_ref = cuda_time(ours.step), cuda_time(sched.step), cuda_time(ref.step)
            gbs = BYTES[dtype] * numel / t_ours / 1e9
            print(f"{name:18s} {str(dtype)[6:]:9s} {t_ours * 1e6:8.0f}us {gbs:7.0f} {100 * gbs / copy_gbs:6.0f}% "
                  f"{t_sched * 1e6:8.0f}us {t_ref * 1e6:10.0f}us {t_ref / t_ours:6.2f}")
            del ours, sched, ref
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
