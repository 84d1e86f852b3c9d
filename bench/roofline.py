"""The memory roofline: bandwidth of a three-stream add (read a, read b, write c) on tensors far
larger than the caches, measured in the same process as the benchmarks it scales."""

from __future__ import annotations

import statistics
import time

import torch

# fp32 SGD with momentum moves 20 bytes per element: read param, grad, buffer; write param, buffer.
SGD_BYTES_PER_ELEMENT = {torch.float32: 20, torch.bfloat16: 10, torch.float16: 10, torch.float64: 40}


def measure_bandwidth(numel: int = 64 * 2**20, repeats: int = 15) -> float:
    a, b, c = torch.rand(numel), torch.rand(numel), torch.empty(numel)
    torch.add(a, b, out=c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.add(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 3 * 4 * numel / statistics.median(times) / 1e9


if __name__ == "__main__":
    print(f"three-stream add: {measure_bandwidth():.1f} GB/s with {torch.get_num_threads()} threads")
