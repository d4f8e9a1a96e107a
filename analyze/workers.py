"""Per-trace work in this process or in local worker processes, with an optional progress bar.

The one place that runs a function over many traces locally: ``analyze_paths`` (tables in memory)
and ``analyze_into`` (tables on disk) both use it; the Dask path (analyze.cluster) shares the bar.
tqdm is imported only when a bar is shown: start-up is part of every short analysis's time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from analyze.errors import AnalyzeError

T = TypeVar("T")
R = TypeVar("R")


class _NoBar:
    """What a tqdm bar offers the loops, doing nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        pass


def progress_bar(total: int, progress: bool) -> Any:
    """A tqdm bar over ``total`` traces on stderr, or a do-nothing stand-in."""
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="trace", file=sys.stderr, leave=False)


def map_traces(fn: Callable[[T], R], items: Sequence[T], processes: int, progress: bool) -> Iterator[R]:
    """``fn(item)`` for each item, in order: here when ``processes`` is 1 (or there is one item),
    else in a pool of that many processes. A worker that dies (out of memory) is one AnalyzeError."""
    with progress_bar(len(items), progress) as bar:
        if processes <= 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
                bar.update()
            return
        try:
            with ProcessPoolExecutor(max_workers=min(processes, len(items))) as pool:
                for result in pool.map(fn, items):
                    yield result
                    bar.update()
        except BrokenProcessPool:
            raise AnalyzeError(
                f"a --jobs {processes} worker process died (out of memory?); retry with fewer jobs"
            ) from None
