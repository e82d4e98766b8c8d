"""Pausing Python's cyclic garbage collector while a large acyclic structure is built."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off, then restore it.

    Reading a 10^6-node graph allocates millions of records, tuples and strings, none of them in a
    cycle. With the collector on, each full collection walks everything allocated so far: 22 of
    80 s of `modelsize memory` on a 10^6-node chain went there (measured by switching it off), and
    the share grows with the graph. Objects made during the block are examined once, by the first
    collection after it, so cyclic garbage is still freed.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
