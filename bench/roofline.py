"""The memory roofline of an SGD step on this machine, and each fusedlr case as a % of it.

The reference is a streaming kernel of our own, built with the extension
(``fusedlr._C._stream_reference``): read p, g and b, write p and b (no b without momentum), one
add per float32 word, split across torch's threads and at the SIMD level of the step, on streams
of 256 MiB each, far larger than the caches. It moves exactly the traffic of a step whose streams
have those sizes and does nothing else, so a step's bytes per second over the reference's is how
close the step is to the memory; a figure above ~105 % would mean the reference is wrong.

A step moves, per element, its itemsize for each stream: 5 streams with momentum (fp32: 20 B,
bf16/fp16: 10 B), 3 without (fp32: 12 B); bf16 parameters with float32 momentum
(``--dtypes bfloat16/float32``, ``fusedlr.SGD(momentum_dtype=torch.float32)``): 3 x 2 + 2 x 4 = 14 B.

    python bench/roofline.py [--sets mlp,resnet50,2000x1k,2M] [--dtypes float32,bfloat16,float16,bfloat16/float32]
                             [--flat] [--cold] [--momentum 0]

prints the reference's GB/s, then per case fusedlr's time, GB/s and % of the roofline (interleaved
with the reference, medians), and the fixed cost per tensor: (t(2000 x 1k) - t(one 2M tensor)) / 2000.

A case whose tensors fit in the last-level cache (LLC) is marked "in LLC": repeated steps then
find their data in the cache, and over 100 % of the DRAM roofline says that, not that the
reference is wrong. ``--cold`` reads four times the LLC before every timed step (not timed), so
that every case starts from DRAM, and adds a second reference sized to the case (the same bytes
per stream, the same eviction): a step ends with its writes still in the cache, which a step
larger than the cache cannot, so a cold case is judged against the same-size stream.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import fusedlr
from fusedlr import _C


def streams(momentum: bool = True) -> int:
    """Streams an SGD step moves: read param, grad (and buffer); write param (and buffer)."""
    return 5 if momentum else 3


def itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


FLOAT_DTYPES = ("float32", "float64", "bfloat16", "float16")


def parse_case_dtype(spec: str) -> tuple[torch.dtype, torch.dtype | None]:
    """'bfloat16' -> (torch.bfloat16, None); 'bfloat16/float32': bfloat16 parameters whose momentum
    is kept in float32 (fusedlr.SGD's momentum_dtype). ValueError for anything else."""
    names = spec.split("/")
    if not 1 <= len(names) <= 2 or names[0] not in FLOAT_DTYPES or names[1:] not in ([], ["float32"]):
        raise ValueError(f"{spec!r} is not a dtype ({', '.join(FLOAT_DTYPES)}) or param/momentum pair such as "
                         "bfloat16/float32")
    return getattr(torch, names[0]), getattr(torch, names[1]) if len(names) > 1 else None


def check_names(ap: argparse.ArgumentParser, option: str, given: str, known) -> list[str]:
    """The comma-separated names of ``given``; an unknown one ends the script with one line (exit 2)."""
    names = given.split(",")
    unknown = [name for name in names if name not in known]
    if unknown:
        ap.error(f"{option}: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def bytes_per_element(dtype: torch.dtype, momentum: bool = True, momentum_dtype: torch.dtype | None = None) -> int:
    """Read param, grad (and buffer); write param (and buffer)."""
    return 3 * itemsize(dtype) + (2 * itemsize(momentum_dtype or dtype) if momentum else 0)


class Reference:
    """The streaming kernel on 256 MiB streams (or ``words`` float32 words each); ``run()`` is one
    pass, ``gbs(seconds)`` its bandwidth."""

    def __init__(self, momentum: bool = True, mib_per_stream: int = 256, words: int | None = None) -> None:
        words = words or mib_per_stream * 2**20 // 4
        self.p, self.g = torch.rand(words), torch.rand(words)
        self.b = torch.rand(words) if momentum else None
        self.bytes = streams(momentum) * 4 * words
        self.run()  # first touch

    @classmethod
    def same_bytes(cls, numel: int, dtype: torch.dtype, momentum: bool = True,
                   momentum_dtype: torch.dtype | None = None) -> "Reference":
        """The reference sized to move what a step of ``numel`` elements moves (bytes_per_element)."""
        return cls(momentum, words=max(1, numel * bytes_per_element(dtype, momentum, momentum_dtype)
                                       // (4 * streams(momentum))))

    def run(self) -> None:
        _C._stream_reference(self.p, self.g, self.b)

    def gbs(self, seconds: float) -> float:
        return self.bytes / seconds / 1e9

    def sample_gbs(self, passes: int) -> list[float]:
        """GB/s of each of ``passes`` timed passes."""
        samples = []
        for _ in range(passes):
            t0 = time.perf_counter()
            self.run()
            samples.append(self.gbs(time.perf_counter() - t0))
        return samples


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (sysfs), or 32 MiB where the system does not say."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        units = {"K": 2**10, "M": 2**20, "G": 2**30}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes, default=32 * 2**20)


def working_set_bytes(numel: int, dtype: torch.dtype, momentum: bool = True,
                      momentum_dtype: torch.dtype | None = None) -> int:
    """Distinct bytes a step touches: param, grad (and buffer), each once."""
    return numel * (2 * itemsize(dtype) + (itemsize(momentum_dtype or dtype) if momentum else 0))


class Evictor:
    """Reads four times the last-level cache (a read leaves no dirty lines to write back later),
    so that what comes next is read from DRAM."""

    def __init__(self) -> None:
        self.buf = torch.ones(last_level_cache_bytes())  # float32 words: 4x the LLC in bytes

    def __call__(self) -> None:
        self.buf.sum()


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from models import SHAPE_SETS, make_params, time_it

    from fusedlr.demo.cli import _positive_int  # (the demo's argparse type)

    sets = dict(SHAPE_SETS, **{"2M": lambda: [(2_000_000,)]})
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="mlp,resnet50,2000x1k,2M")
    ap.add_argument("--dtypes", default="float32,bfloat16,float16,bfloat16/float32")
    ap.add_argument("--rounds", type=_positive_int, default=15)
    ap.add_argument("--flat", action="store_true", help="fusedlr.SGD(flat=True): each set's tensors laid out as one")
    ap.add_argument("--momentum", type=float, default=0.9, help="0: the step without momentum (3 streams)")
    ap.add_argument("--cold", action="store_true", help="evict the caches before every timed step (one step per sample)")
    args = ap.parse_args()
    set_names = check_names(ap, "--sets", args.sets, sets)
    try:
        cases = {name: parse_case_dtype(name) for name in args.dtypes.split(",")}
    except ValueError as error:
        ap.error(f"--dtypes: {error}")
    momentum = args.momentum != 0  # without: 3 streams (12 B per fp32 element), the reference too
    ref = Reference(momentum=momentum)
    evict = Evictor() if args.cold else None
    llc = last_level_cache_bytes()
    print(f"CPU kernel level {_C.cpu_kernel_level()}, {torch.get_num_threads()} threads, LLC {llc / 2**20:.0f} MiB"
          f"{', flat=True' if args.flat else ''}{', cold: caches evicted before every step' if args.cold else ''}")
    medians: dict[tuple[str, str], float] = {}
    for dtype_name, (dtype, momentum_dtype) in cases.items():
        per_element = bytes_per_element(dtype, momentum, momentum_dtype)
        for set_name in set_names:
            params = make_params(sets[set_name](), dtype)
            opt = fusedlr.SGD(params, lr=0.01, momentum=args.momentum, flat=args.flat, momentum_dtype=momentum_dtype)
            opt.step()
            numel = sum(p.numel() for p in params)
            repeat = 1 if evict else max(1, int(0.05 / max(time_it(opt.step, 1), 1e-6)))
            # the same bytes per stream in float32 words, for --cold
            same = Reference.same_bytes(numel, dtype, momentum, momentum_dtype) if evict else None
            ours, refs, sames = [], [], []
            for _ in range(args.rounds):  # interleaved: noise hits both alike
                if evict:
                    evict()
                ours.append(time_it(opt.step, repeat))
                refs.append(time_it(ref.run, 1))
                if same:
                    evict()
                    sames.append(time_it(same.run, 1))
            t, roof = statistics.median(ours), ref.gbs(statistics.median(refs))
            gbs = numel * per_element / t / 1e9
            medians[(set_name, dtype_name)] = t
            cached = not evict and working_set_bytes(numel, dtype, momentum, momentum_dtype) <= llc
            line = (f"{set_name:>9} {dtype_name:>16}: {t * 1e6:9.1f} us  {gbs:5.1f} GB/s  {100 * gbs / roof:5.1f} % "
                    f"of {roof:.1f} GB/s{'  (in LLC)' if cached else ''}")
            if same:
                same_gbs = same.gbs(statistics.median(sames))
                line += f"; {100 * gbs / same_gbs:5.1f} % of the same bytes streamed cold ({same_gbs:.1f} GB/s)"
            print(line)
    for dtype_name in cases:
        if ("2000x1k", dtype_name) in medians and ("2M", dtype_name) in medians:
            fixed = (medians[("2000x1k", dtype_name)] - medians[("2M", dtype_name)]) / 2000
            print(f"fixed cost per tensor ({dtype_name}): {fixed * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
