"""MNIST / Fashion-MNIST as tensors, offline first.

The datasets are decoded once into uint8 tensors and batched by indexing, which is about ten
times faster on two cores than torchvision's per-sample PIL transform path; images are scaled
to [0, 1] exactly as ``transforms.ToTensor()`` does.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# Where Debian's dataset-fashion-mnist package puts the IDX files (overridable, for tests).
DEBIAN_FASHION_MNIST = Path(os.environ.get("FUSEDLR_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
DEFAULT_ROOT = Path(os.environ.get("FUSEDLR_DATA", Path.home() / ".cache" / "fusedlr" / "data"))

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX element types (the third byte of the magic number).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

HOW_TO_GET_DATA = (
    "Get the data with one of: `apt-get install dataset-fashion-mnist` (real Fashion-MNIST, offline); "
    "`--data-root DIR` with the four IDX files (train-images-idx3-ubyte[.gz], ...); "
    "or run once with internet access so torchvision can download MNIST."
)


class DataUnavailable(RuntimeError):
    """No usable copy of the requested dataset; the message says how to get one."""


class InvalidData(ValueError):
    """A data file that is there but cannot be used (unreadable, truncated, not MNIST); the message names it."""


@dataclass
class Split:
    images: torch.Tensor  # (N, 1, 28, 28) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64


@dataclass
class Dataset:
    name: str
    source: str
    train: Split
    test: Split


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a NumPy array of its declared shape and type.

    Raises :class:`InvalidData` naming the file when it cannot be read, is not IDX, or is truncated.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:  # a truncated or damaged .gz
        raise InvalidData(f"{path}: not a complete gzip file ({error})") from None
    except OSError as error:
        raise InvalidData(f"{path}: cannot read it ({error.strerror or error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise InvalidData(f"{path}: not an IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise InvalidData(f"{path}: truncated IDX header ({len(data)} bytes, {ndim} dimensions need {offset})")
    dims = struct.unpack(f">{ndim}I", data[4:offset])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    count = math.prod(dims)
    if len(data) - offset != count * dtype.itemsize:
        raise InvalidData(f"{path}: expected {count} elements of shape {dims} ({count * dtype.itemsize} bytes) "
                          f"after the header, the file holds {len(data) - offset} bytes (truncated or damaged)")
    # A writable copy in native byte order: torch.from_numpy needs both.
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str) -> Path | None:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx_folder_has_dataset(root: Path) -> bool:
    return all(_find(root, stem) is not None for stem in _FILES.values())


def _split(images: np.ndarray, labels: np.ndarray, images_from: str, labels_from: str) -> Split:
    """One split as tensors, after checking it is MNIST-shaped: (N, 28, 28) bytes and N labels in 0..9."""
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise InvalidData(f"{images_from}: images must be 28x28 unsigned bytes, shape (N, 28, 28); "
                          f"got shape {images.shape} of {images.dtype}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise InvalidData(f"{labels_from}: labels must be one integer per image, shape (N,); "
                          f"got shape {labels.shape} of {labels.dtype}")
    if len(images) == 0:
        raise InvalidData(f"{images_from}: holds no images")
    if len(labels) != len(images):
        raise InvalidData(f"{labels_from} holds {len(labels)} labels but {images_from} holds {len(images)} "
                          f"images; they must match")
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if bad.size:
        raise InvalidData(f"{labels_from}: labels must be 0..9, found {labels[bad[0]]} at index {bad[0]}")
    x = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).float().div_(255.0)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


def load_idx_folder(root: Path, name: str) -> Dataset:
    paths = {key: _find(root, stem) for key, stem in _FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}  # type: ignore[arg-type]
    splits = [_split(arrays[f"{s}_images"], arrays[f"{s}_labels"], str(paths[f"{s}_images"]),
                     str(paths[f"{s}_labels"])) for s in ("train", "test")]
    return Dataset(name, str(root), *splits)


def _load_torchvision(name: str, root: Path, download: bool) -> Dataset:
    import contextlib
    import io
    import socket

    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}[name]
    # torchvision prints every mirror it tries; the caller reports the outcome in one line.
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            splits = [cls(str(root), train=train, download=download) for train in (True, False)]
    finally:
        socket.setdefaulttimeout(previous_timeout)
    source = f"torchvision {cls.__name__} in {root}"
    return Dataset(name, source, *(_split(s.data.numpy(), s.targets.numpy(), f"{source} ({split} images)",
                                          f"{source} ({split} labels)")
                                   for s, split in zip(splits, ("train", "test"))))


def load(name: str, root: str | os.PathLike | None = None, *, download: bool = True, log=print) -> Dataset:
    """Load ``name`` ("mnist" or "fashion-mnist").

    Looks, in order, in ``root`` as a folder of IDX files, in ``root`` as a torchvision dataset
    root (downloading there when allowed and possible), and, for Fashion-MNIST, in the Debian
    package's folder. When MNIST cannot be had, says so in one line and falls back to
    Fashion-MNIST if that is installed. Raises :class:`DataUnavailable` otherwise, and
    :class:`InvalidData` when the files found are damaged or not MNIST-shaped.
    """
    if name not in ("mnist", "fashion-mnist"):
        raise ValueError(f"dataset must be 'mnist' or 'fashion-mnist', got {name!r}")
    root_path = Path(root) if root is not None else DEFAULT_ROOT
    if idx_folder_has_dataset(root_path):
        return load_idx_folder(root_path, name)
    if name == "fashion-mnist" and idx_folder_has_dataset(DEBIAN_FASHION_MNIST):
        return load_idx_folder(DEBIAN_FASHION_MNIST, name)
    try:
        return _load_torchvision(name, root_path, download)
    except InvalidData:  # the data is there but damaged: say so, rather than "not available"
        raise
    except Exception as error:  # offline: URLError, RuntimeError("Dataset not found"), ...
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        network = [line for line in lines if "urlopen error" in line]
        reason = f"not in {root_path} and the download failed: {network[-1]}" if network else (
            lines[0] if lines else type(error).__name__)
    if name == "mnist" and idx_folder_has_dataset(DEBIAN_FASHION_MNIST):
        log(f"MNIST is not available ({reason}); falling back to Fashion-MNIST from {DEBIAN_FASHION_MNIST}")
        return load_idx_folder(DEBIAN_FASHION_MNIST, "fashion-mnist")
    raise DataUnavailable(f"{name} is not available ({reason}). {HOW_TO_GET_DATA}")
