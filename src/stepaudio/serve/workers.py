"""Blocking model work of the HTTP routes off the event loop, one thread per model: requests queue
for a model instead of each taking a thread of its own and all of them sharing two cores (a queue
keeps the first answer fast), and the event loop stays free for the real-time sessions' audio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch

from stepaudio.errors import StepAudioError
from stepaudio.realtime.worker import STAGE_THREADS

T = TypeVar("T")
_END = object()
STALL_SECONDS = 30.0  # a consumer that takes nothing for this long is gone: the producer stops


class ServerBusy(StepAudioError):
    """A model's queue is full: the request is refused at once (503) rather than left waiting."""


class ModelWorker:
    def __init__(self, name: str, torch_threads: int = STAGE_THREADS):
        """torch_threads: PyTorch's threads on the worker's thread (see `stepaudio.realtime.worker`)."""
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix=f"stepaudio-{name}",
            initializer=torch.set_num_threads,
            initargs=(torch_threads,),
        )
        self.pending = 0  # calls given to the worker and not finished: the one running and those waiting

    def _submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future:
        self.pending += 1
        future = asyncio.get_running_loop().run_in_executor(self._executor, _no_grad(fn), *args)
        future.add_done_callback(lambda _: setattr(self, "pending", self.pending - 1))
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._submit(fn, *args)

    async def stream(self, make: Callable[[threading.Event], Iterator[T]], buffer: int = 8) -> AsyncIterator[T]:
        """Run the iterator `make(cancel)` on the worker's thread and yield its items here. When the
        consumer stops early (a client went away), `cancel` is set and the thread stops at its next
        item. At most `buffer` items wait, so a slow reader slows the producer down; one that takes
        nothing for STALL_SECONDS is taken for gone."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(buffer)
        cancel = threading.Event()

        def put(item) -> None:
            pending = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            try:
                pending.result(STALL_SECONDS)
            except concurrent.futures.TimeoutError:  # never left waiting by a consumer dropped unclosed
                pending.cancel()
                cancel.set()

        def produce() -> None:
            try:
                for item in make(cancel):
                    if cancel.is_set():
                        return
                    put(item)
                put(_END)
            except BaseException as error:  # handed to the consumer, which raises it
                if not cancel.is_set():
                    put(error)

        done = self._submit(produce)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.set()
            while not queue.empty():  # unblock a producer waiting on a full queue
                queue.get_nowait()
            await asyncio.shield(done)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _no_grad(fn: Callable[..., T]) -> Callable[..., T]:
    """Model calls never need autograd; inference mode saves its bookkeeping."""

    def call(*args):
        import torch

        with torch.inference_mode():
            return fn(*args)

    return call
