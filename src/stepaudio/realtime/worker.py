"""Blocking model calls off the event loop, cancellable.

A model stage (listening, the LM, the TTS) runs in its own thread; the asyncio side iterates what
it yields. Cancelling the asyncio task sets the stage's `threading.Event`, which the model checks
between steps, so the thread stops soon after and frees the model for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import torch

T = TypeVar("T")
# PyTorch's small ops, called from a thread other than the main one, run 2x slower on a team of 2
# OpenMP threads than on 1 (SmolLM2 decoding: 50 vs 23 ms a token on 2 cores), and the stages overlap
# on the cores: a stage computes on one thread unless it asks for more (one big pass, e.g. an encoder).
STAGE_THREADS = 1
LISTEN_THREADS = 2  # hearing a turn is one encoder pass of large matrix products: both cores help
_DONE = object()


class StageThreads:
    """The threads one session started. Closing the session waits for them (cancelled, they end
    soon), so that no thread is still inside a model when the process exits: the C++ runtimes abort
    the interpreter's shutdown otherwise."""

    def __init__(self):
        self._live: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, target: Callable[[], None], name: str, torch_threads: int = STAGE_THREADS) -> None:
        def run() -> None:
            torch.set_num_threads(torch_threads)
            try:
                target()
            finally:
                with self._lock:
                    self._live.discard(threading.current_thread())

        thread = threading.Thread(target=run, daemon=True, name=name)
        with self._lock:
            self._live.add(thread)
        thread.start()

    async def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds in all for the threads still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            live = list(self._live)
        for thread in live:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))


_UNTRACKED = StageThreads()


async def iterate_in_thread(
    make: Callable[[threading.Event], Iterator[T]], threads: StageThreads = _UNTRACKED
) -> AsyncIterator[T]:
    """Items of `make(cancel)` iterated in a thread, delivered as they come; exceptions re-raised here.
    Leaving the loop early (break, cancellation) sets `cancel`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def run() -> None:
        try:
            for item in make(cancel):
                _post(loop, queue.put_nowait, (item, None))
                if cancel.is_set():
                    break
            _post(loop, queue.put_nowait, (_DONE, None))
        except BaseException as error:  # delivered to the awaiting side
            _post(loop, queue.put_nowait, (_DONE, error))

    threads.start(run, "stepaudio-stage")
    try:
        while True:
            item, error = await queue.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        cancel.set()


async def call_in_thread(
    function: Callable[[], T], threads: StageThreads = _UNTRACKED, torch_threads: int = STAGE_THREADS
) -> T:
    """`function()` in a thread of its own (a session's stages must not queue behind other sessions')."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run() -> None:
        try:
            result = function()
        except BaseException as error:
            _post(loop, _settle, future, None, error)
        else:
            _post(loop, _settle, future, result, None)

    threads.start(run, "stepaudio-call", torch_threads)
    return await future


def _post(loop: asyncio.AbstractEventLoop, callback, *args) -> None:
    """Hand a result to the event loop, unless it has closed meanwhile (nobody waits any more)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def _settle(future: asyncio.Future, result, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
