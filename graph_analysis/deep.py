"""The opt-in deep scan: hash tensor payloads to find identical and transposed copies.

Payloads are read through ``numpy.memmap`` in chunks, so memory stays bounded whatever the model's size.
Tensors whose elements are all equal (a freshly initialised LayerNorm's ones, zero biases) are never
reported as copies: equal content there is no evidence that one tensor was exported twice.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graph_analysis.errors import ExternalDataError
from graph_analysis.loading import Encoding, TensorInfo

__all__ = ["CopyMatch", "find_copies"]

_CHUNK_BYTES = 1 << 24
_UINT_OF_WIDTH = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass(frozen=True)
class CopyMatch:
    """``copy`` (index into the scanned tensors) holds the same values as ``original`` (``kind``)."""

    original: int
    copy: int
    kind: str  # "identical" or "transposed"


def _view(tensor: TensorInfo, maps: dict[Path, np.memmap]) -> np.ndarray | None:
    """The payload's bytes, a slice of one read-only map per file (not one map per tensor: a
    process may hold only about 65,000 maps, fewer than the tensors of a large model)."""
    payload = tensor.payload
    if payload is None or payload.encoding == Encoding.OTHER or payload.length == 0:
        return None
    whole = maps.get(payload.path)
    if whole is None:
        whole = maps[payload.path] = _map_file(payload.path)
    view: np.ndarray = whole[payload.offset : payload.offset + payload.length]
    return view


def _map_file(path: Path) -> np.memmap:
    """Map ``path`` read-only; opened non-blocking and checked to still be a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ExternalDataError(path, f"cannot be read ({e.strerror or e})") from e
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ExternalDataError(path, "is no longer a regular file")
        return np.memmap(handle, dtype=np.uint8, mode="r")


def _digest(view: np.ndarray) -> tuple[bytes, bool]:
    """(blake2b digest, whether all bytes repeat the first element's bytes)."""
    h = hashlib.blake2b(digest_size=16)
    uniform = True
    for start in range(0, view.shape[0], _CHUNK_BYTES):
        chunk = np.asarray(view[start : start + _CHUNK_BYTES])
        h.update(chunk.tobytes())
        if uniform:
            uniform = bool(np.all(chunk == chunk[0]))
    return h.digest(), uniform


def _elements_uniform(tensor: TensorInfo, view: np.ndarray, byte_uniform: bool) -> bool:
    width = _element_width(tensor)
    if byte_uniform:
        return True
    if tensor.payload is None or tensor.payload.encoding == Encoding.VARINT or width == 0:
        return False
    usable = view.shape[0] - view.shape[0] % width
    first = np.asarray(view[:width]).view(_UINT_OF_WIDTH[width])[0]
    step = _CHUNK_BYTES - _CHUNK_BYTES % width
    for start in range(0, usable, step):
        chunk = np.asarray(view[start : min(start + step, usable)]).view(_UINT_OF_WIDTH[width])
        if not np.all(chunk == first):
            return False
    return True


def _element_width(tensor: TensorInfo) -> int:
    if tensor.num_elements == 0:
        return 0
    width = tensor.nbytes // tensor.num_elements
    if width * tensor.num_elements != tensor.nbytes or width not in _UINT_OF_WIDTH:
        return 0
    return width


def _is_transpose(a: TensorInfo, b: TensorInfo, view_a: np.ndarray, view_b: np.ndarray) -> bool:
    """Whether 2-D ``b`` equals ``a`` transposed, compared in row blocks of ``b``."""
    width = _element_width(a)
    if width == 0 or a.payload is None or b.payload is None:
        return False
    if Encoding.VARINT in (a.payload.encoding, b.payload.encoding):
        return False
    rows_a, cols_a = a.dims
    mat_a = np.asarray(view_a).view(_UINT_OF_WIDTH[width]).reshape(rows_a, cols_a)
    mat_b = np.asarray(view_b).view(_UINT_OF_WIDTH[width]).reshape(cols_a, rows_a)
    block = max(1, _CHUNK_BYTES // max(1, rows_a * width))
    for start in range(0, cols_a, block):
        if not np.array_equal(mat_a[:, start : start + block].T, mat_b[start : start + block]):
            return False
    return True


def find_copies(tensors: Sequence[TensorInfo], *, min_elements: int = 2) -> list[CopyMatch]:
    """Find tensors whose values duplicate an earlier one, identically or transposed (2-D).

    Args:
        tensors: candidates, in a stable order; the first of a group is its original.
        min_elements: smaller tensors are skipped.

    Returns:
        One match per copy found.
    """
    maps: dict[Path, np.memmap] = {}
    views: dict[int, np.ndarray] = {}
    groups: dict[tuple[int, int, tuple[int, ...], bytes], list[int]] = defaultdict(list)
    for index, tensor in enumerate(tensors):
        if tensor.num_elements < min_elements:
            continue
        view = _view(tensor, maps)
        if view is None:
            continue
        digest, byte_uniform = _digest(view)
        if _elements_uniform(tensor, view, byte_uniform):
            continue
        views[index] = view
        encoding = tensor.payload.encoding.value if tensor.payload else ""
        groups[(tensor.data_type.value, tensor.num_elements, (hash(encoding),), digest)].append(
            index
        )
    matches: list[CopyMatch] = []
    copied: set[int] = set()
    for members in groups.values():
        for other in members[1:]:
            matches.append(CopyMatch(members[0], other, "identical"))
            copied.add(other)
    # Transposed copies: 2-D tensors of swapped shapes and the same type.
    by_shape: dict[tuple[int, tuple[int, ...]], list[int]] = defaultdict(list)
    for index in views:
        tensor = tensors[index]
        if len(tensor.dims) == 2 and index not in copied:
            by_shape[(tensor.data_type.value, tensor.dims)].append(index)
    for (dtype, (rows, cols)), members in by_shape.items():
        partners = by_shape.get((dtype, (cols, rows)), [])
        for a in members:
            for b in partners:
                if b <= a or b in copied or a in copied:
                    continue
                if _is_transpose(tensors[a], tensors[b], views[a], views[b]):
                    matches.append(CopyMatch(a, b, "transposed"))
                    copied.add(b)
                    break
    return matches
