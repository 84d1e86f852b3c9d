"""Is a step's fixed cost per tensor software or memory layout?

fusedlr.SGD on 2000 x k fp32 tensors allocated one by one, on 2000 views of one flat buffer (the
same pieces, the same code path, contiguous memory), on the separate tensors laid out by
fusedlr.SGD(flat=True) (stepped as one tensor, after a check of each tensor's place), and on one
tensor of 2000 k elements; interleaved medians, and each many-tensor case's cost per tensor over
the one tensor.

    python bench/per_tensor_layout.py [--k 1000] [--rounds 31] [--evict 96]

--evict M streams over M MiB before every step (more than the last-level cache), so that each
step also finds its tensors' metadata (TensorImpls, storages, autograd metadata) in DRAM, as a
step after a forward and backward pass does; --k 16 then measures that metadata cost alone.
"""

import argparse
import statistics
import time

import torch

import fusedlr
from fusedlr.demo.cli import _non_negative_int, _positive_int  # (the demo's argparse types)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--k", type=_positive_int, default=1000)
    ap.add_argument("--n", type=_positive_int, default=2000)
    ap.add_argument("--rounds", type=_positive_int, default=31)
    ap.add_argument("--evict", type=_non_negative_int, default=0, help="MiB streamed over before every step (0: none)")
    a = ap.parse_args()
    n, k = a.n, a.k
    separate = lambda: [torch.randn(k) for _ in range(n)]  # noqa: E731
    layouts = {  # name: (tensors, flat=)
        "separate": (separate, False),
        "flat views": (lambda: list(torch.randn(n * k).split(k)), False),
        "flat=True": (separate, True),
        "one tensor": (lambda: [torch.randn(n * k)], False),
    }
    opts = {}
    for name, (make, flat) in layouts.items():
        params = [torch.nn.Parameter(t) for t in make()]
        for p, g in zip(params, make()):
            p.grad = g
        opts[name] = fusedlr.SGD(params, lr=0.01, momentum=0.9, flat=flat)
        opts[name].step()
    times = {name: [] for name in opts}
    evict = torch.zeros(a.evict * 2**20 // 4) if a.evict else None
    for _ in range(a.rounds):
        for name, opt in opts.items():
            if evict is not None:
                evict.add_(1.0)
            t = time.perf_counter()
            opt.step()
            times[name].append(time.perf_counter() - t)
    one = statistics.median(times["one tensor"])
    print(f"{n} x {k} fp32, momentum, kernel {fusedlr._C.cpu_kernel_level()}, {torch.get_num_threads()} threads"
          + (f", {a.evict} MiB streamed before every step" if a.evict else ""))
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:12s} {m * 1e6:9.1f} us  {n * k * 20 / m / 1e9:5.1f} GB/s  {(m - one) / n * 1e9:5.0f} ns/tensor over one tensor")


if __name__ == "__main__":
    main()
