"""The memory roofline: bandwidth of an in-place three-stream add (read a, read b, write a) on
tensors far larger than the caches, measured in the same process as the benchmarks it scales.

In place, like the SGD update (which writes back the param and buffer it read), so no stream
pays a write-allocate read: 12 bytes per element. (An out-of-place add, c = a + b, reads c's
lines before writing them on this machine and shows ~30 % less.)"""

from __future__ import annotations

import statistics
import time

import torch

# fp32 SGD with momentum moves 20 bytes per element: read param, grad, buffer; write param, buffer.
SGD_BYTES_PER_ELEMENT = {torch.float32: 20, torch.bfloat16: 10, torch.float16: 10, torch.float64: 40}


def measure_bandwidth(numel: int = 64 * 2**20, repeats: int = 15) -> float:
    a, b = torch.rand(numel), torch.rand(numel)
    a.add_(b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.add_(b)
        times.append(time.perf_counter() - t0)
    return 3 * 4 * numel / statistics.median(times) / 1e9


if __name__ == "__main__":
    print(f"in-place three-stream add: {measure_bandwidth():.1f} GB/s with {torch.get_num_threads()} threads")
