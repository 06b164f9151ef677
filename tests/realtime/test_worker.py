"""Model stages in threads: results arrive in order, errors cross over, cancelling stops the thread."""

import asyncio
import threading
import time

import pytest

from stepaudio.realtime.worker import call_in_thread, iterate_in_thread


def test_items_arrive_in_order_and_errors_are_raised_here():
    def numbers(cancel):
        yield from range(3)
        raise ValueError("boom")

    async def main():
        seen = []
        with pytest.raises(ValueError, match="boom"):
            async for item in iterate_in_thread(numbers):
                seen.append(item)
        assert seen == [0, 1, 2]
        assert await call_in_thread(lambda: threading.current_thread().name) == "stepaudio-call"

    asyncio.run(main())


def test_cancelling_the_task_sets_the_threads_event():
    stopped = threading.Event()

    def forever(cancel):
        try:
            while not cancel.is_set():
                time.sleep(0.005)
                yield 1
        finally:
            stopped.set()

    async def consume():
        async for _ in iterate_in_thread(forever):
            pass

    async def main():
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stopped.wait(1.0)


def test_a_session_can_wait_for_its_stage_threads():
    from stepaudio.realtime.worker import StageThreads

    async def main():
        threads, finished = StageThreads(), threading.Event()

        def slow(cancel):
            yield 1
            time.sleep(0.2)  # a model call that cannot be interrupted
            finished.set()
            yield 2

        async for _ in iterate_in_thread(slow, threads):
            break  # the consumer leaves; the thread is still inside its model call
        assert not finished.is_set()
        await threads.join(timeout=2.0)
        assert finished.is_set()

    asyncio.run(main())
