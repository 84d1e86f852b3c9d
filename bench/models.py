"""Parameter sets shaped like real models, for benchmarks (shapes only; values are random)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def resnet50_shapes() -> list[tuple[int, ...]]:
    import torchvision

    return [tuple(p.shape) for p in torchvision.models.resnet50().parameters()]


def mlp_shapes() -> list[tuple[int, ...]]:
    """The demo's SimpleNet: Linear 784→128, Linear 128→10."""
    return [(128, 784), (128,), (10, 128), (10,)]


def gpt2_small_shapes(layers: int = 12, d: int = 768, vocab: int = 50257, ctx: int = 1024) -> list[tuple[int, ...]]:
    """GPT-2 small: embeddings, and per block two LayerNorms, attention and MLP (many small tensors)."""
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return shapes + [(d,), (d,)]


def many_small_shapes(count: int = 2000, size: int = 1000) -> list[tuple[int, ...]]:
    return [(size,)] * count


def one_big_shape(numel: int = 64 * 2**20) -> list[tuple[int, ...]]:
    return [(numel,)]


SHAPE_SETS = {
    "mlp": mlp_shapes,
    "resnet50": resnet50_shapes,
    "gpt2s": gpt2_small_shapes,
    "2000x1k": many_small_shapes,
    "64M": one_big_shape,
}


def make_params(shapes, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=dtype) * 1e-3
    return params


def time_it(fn: Callable[[], object], repeat: int) -> float:
    """Seconds per call of ``fn``, over ``repeat`` calls."""
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def interleaved_medians(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in turn every round (the order rotated
    per round, so machine noise hits all alike), after a warm-up. A sample repeats a call for
    about 20 ms, sized on the first function."""
    repeat = max(1, int(0.02 / max(time_it(next(iter(fns.values())), 1), 1e-6)))
    for fn in fns.values():  # warm-up: state allocation, first touch
        time_it(fn, repeat)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            samples[name].append(time_it(fns[name], repeat))
    return {name: statistics.median(s) for name, s in samples.items()}
