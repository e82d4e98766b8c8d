"""onnxruntime's CPU memory arena replayed over the liveness order (private to ``memory``).

onnxruntime's CPU allocator is a best-fit-with-coalescing arena (``core/framework/bfc_arena.cc``):
requests are rounded up to 256 bytes; a free chunk is taken from the smallest size that fits
(lowest address among equals) and split when it is at least twice the request; freed chunks merge
with free neighbours of the same region; when nothing fits, the arena adds a region of
``max(request, current)`` bytes, rounded up by doubling, and doubles the next one (the
``kNextPowerOfTwo`` strategy, starting at 1 MiB). Regions never merge. The memory is resident once
written: a region's untouched pages cost nothing, so what the process holds is the pages the
tensors placed in it have covered, which exceeds the liveness peak when later tensors do not fit
the holes earlier ones left (docs/memory.md, "The arena").
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

__all__ = ["ArenaResult", "planned_buffers", "simulate_arena"]

_MIN_ALLOCATION = 256
_MAX_DEAD_BYTES = 128 << 20
_INITIAL_REGION = 1 << 20
_PAGE = 4096
# Regions are placed this far apart so that no chunk ever neighbours another region's.
_REGION_GAP = 1 << 50


@dataclass(frozen=True)
class ArenaResult:
    """What the replayed arena held.

    Attributes:
        resident_bytes: pages written at least once, over every region (what the process holds).
        reserved_bytes: the regions' total size (address space; untouched pages are not resident).
        peak_in_use_bytes: the most bytes of chunks in use at once (requests rounded to 256).
        regions: how many regions the arena allocated.
        region_bytes: each region's size, in allocation order.
        region_resident_bytes: each region's pages written, in the same order.
    """

    resident_bytes: int
    reserved_bytes: int
    peak_in_use_bytes: int
    regions: int
    region_bytes: tuple[int, ...] = ()
    region_resident_bytes: tuple[int, ...] = ()


class _Arena:
    def __init__(self, initial_region: int) -> None:
        self.next_region = initial_region
        self.free: list[tuple[int, int]] = []  # (size, address), sorted: best fit, lowest address
        self.size: dict[int, int] = {}  # chunk address -> size
        self.used: set[int] = set()
        self.prev: dict[int, int] = {}  # chunk address -> previous chunk in its region
        self.region_of: dict[int, int] = {}  # chunk address -> region index
        self.regions: list[tuple[int, int]] = []  # (base, size)
        self.pages: list[bytearray] = []  # per region: 1 for each page written
        self.in_use = 0
        self.peak_in_use = 0

    def _extend(self, rounded: int) -> None:
        grew = False
        while rounded > self.next_region:
            self.next_region *= 2
            grew = True
        size = self.next_region
        if not grew:
            self.next_region *= 2
        base = len(self.regions) * _REGION_GAP
        self.regions.append((base, size))
        self.pages.append(bytearray((size + _PAGE - 1) // _PAGE))
        self.size[base] = size
        self.region_of[base] = len(self.regions) - 1
        bisect.insort(self.free, (size, base))

    def allocate(self, nbytes: int) -> int:
        rounded = -(-nbytes // _MIN_ALLOCATION) * _MIN_ALLOCATION
        index = bisect.bisect_left(self.free, (rounded, -1))
        if index == len(self.free):
            self._extend(rounded)
            index = bisect.bisect_left(self.free, (rounded, -1))
        size, address = self.free.pop(index)
        if size >= 2 * rounded or size - rounded >= _MAX_DEAD_BYTES:
            rest = address + rounded
            self.size[address] = rounded
            self.size[rest] = size - rounded
            self.region_of[rest] = self.region_of[address]
            self.prev[rest] = address
            after = rest + size - rounded
            if after in self.size:
                self.prev[after] = rest
            bisect.insort(self.free, (size - rounded, rest))
        self.used.add(address)
        self.in_use += self.size[address]
        self.peak_in_use = max(self.peak_in_use, self.in_use)
        region = self.region_of[address]
        base = self.regions[region][0]
        first = (address - base) // _PAGE
        last = (address - base + nbytes - 1) // _PAGE
        self.pages[region][first : last + 1] = b"\x01" * (last + 1 - first)
        return address

    def release(self, address: int) -> None:
        self.used.discard(address)
        size = self.size[address]
        self.in_use -= size
        after = address + size
        if after in self.size and after not in self.used:
            self.free.remove((self.size[after], after))
            size += self.size.pop(after)
            del self.region_of[after]
            del self.prev[after]
        before = self.prev.get(address)
        if before is not None and before not in self.used:
            self.free.remove((self.size[before], before))
            size += self.size[before]
            del self.size[address]
            del self.region_of[address]
            del self.prev[address]
            address = before
        self.size[address] = size
        if address + size in self.size:
            self.prev[address + size] = address
        bisect.insort(self.free, (size, address))

    def result(self) -> ArenaResult:
        written = tuple(p.count(1) * _PAGE for p in self.pages)
        return ArenaResult(
            resident_bytes=sum(written),
            reserved_bytes=sum(size for _base, size in self.regions),
            peak_in_use_bytes=self.peak_in_use,
            regions=len(self.regions),
            region_bytes=tuple(size for _base, size in self.regions),
            region_resident_bytes=written,
        )


def planned_buffers(
    spans: Iterable[tuple[int, int, int]], keys: Sequence[Hashable | None]
) -> list[tuple[int, int, int]]:
    """The buffers onnxruntime's allocation planner makes of the tensors: each output takes over
    a dead buffer of the same size when there is one, so that buffer is held from its first
    tensor's step to its last one's, idle in between.

    ``allocation_planner.cc`` (``FindReusableTensor``): for each node in execution order, each
    output that is not in place reuses the first buffer of the same shape and element size on
    the free list, onto whose front a buffer goes when its last reader has run: the most
    recently freed one. A buffer is free for the outputs of the nodes after its last reader's.
    Shapes are the ones onnxruntime knows when it plans, at session creation (a dynamic
    dimension matches only the same named one; a tensor without a shape is never reused). Graph
    inputs (a first step below 0) and outputs (never released) are never reused.

    Args:
        spans: ``(bytes, first_step, last_step)`` of each tensor, in creation order.
        keys: for each span, what two buffers must share to be reused for each other
            (onnxruntime's shape and element type), or None: never reused.

    Returns:
        ``(bytes, first_step, last_step)`` of each buffer, in creation order.
    """
    buffers: list[list[int]] = []  # [bytes, first, last]
    # per key: (death step, buffer index) of the buffers whose tensors are all dead (or will be)
    by_key: dict[Hashable, list[tuple[int, int]]] = {}
    for (nbytes, first, last), key in zip(spans, keys, strict=True):
        if first >= 0 and nbytes > 0 and key is not None:
            free = by_key.setdefault(key, [])
            # The most recently freed buffer among those dead before this step.
            index = bisect.bisect_left(free, (first, -1)) - 1
            if index >= 0:
                _death, reused = free.pop(index)
                buffers[reused][2] = last
                bisect.insort(free, (last, reused))
                continue
            bisect.insort(free, (last, len(buffers)))
        buffers.append([nbytes, first, last])
    return [(b[0], b[1], b[2]) for b in buffers]


def simulate_arena(
    spans: Iterable[tuple[int, int, int]],
    scratch: Iterable[int] = (),
    *,
    initial_region_bytes: int = _INITIAL_REGION,
) -> ArenaResult:
    """Replay the arena over buffers live from one step to another.

    Args:
        spans: ``(bytes, first_step, last_step)`` of each buffer the arena serves, in creation
            order: allocated when its first step's node runs, released after its last step's
            (a last step past the final node: never released).
        scratch: bytes a step's kernel holds while it runs (allocated after its outputs, released
            before its inputs), by step.
        initial_region_bytes: the first region's size (onnxruntime's default: 1 MiB).
    """
    arena = _Arena(initial_region_bytes)
    starts: dict[int, list[tuple[int, int]]] = {}
    ends: dict[int, list[int]] = {}
    for index, (nbytes, first, last) in enumerate(spans):
        if nbytes > 0:
            starts.setdefault(first, []).append((index, nbytes))
            ends.setdefault(last, []).append(index)
    extra = list(scratch)
    steps = sorted(set(starts) | set(ends) | set(range(len(extra))))
    placed: dict[int, int] = {}
    for step in steps:
        for index, nbytes in starts.get(step, ()):
            placed[index] = arena.allocate(nbytes)
        if 0 <= step < len(extra) and extra[step] > 0:
            arena.release(arena.allocate(extra[step]))
        for index in ends.get(step, ()):
            if index in placed:
                arena.release(placed.pop(index))
    return arena.result()
