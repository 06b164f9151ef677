import asyncio
import threading
import time

import pytest

from stepaudio.errors import OptionError
from stepaudio.serve import workers
from stepaudio.serve.workers import ModelWorker


def counting(cancel: threading.Event, seen: list, limit: int = 1000):
    for i in range(limit):
        if cancel.is_set():
            seen.append("cancelled")
            return
        yield i


def test_stream_yields_in_order_and_errors_reach_the_consumer():
    async def main():
        worker = ModelWorker("test")
        items = [x async for x in worker.stream(lambda cancel: counting(cancel, [], 20))]
        assert items == list(range(20))

        def failing(cancel):
            yield 1
            raise OptionError("bad voice")

        with pytest.raises(OptionError, match="bad voice"):
            _ = [x async for x in worker.stream(failing)]
        assert (await worker.run(lambda: threading.current_thread().name)).startswith("stepaudio-test")
        worker.close()

    asyncio.run(main())


def test_leaving_early_stops_the_producer_and_frees_the_worker():
    async def main():
        worker, seen = ModelWorker("test"), []
        stream = worker.stream(lambda cancel: counting(cancel, seen))
        assert await anext(stream) == 0
        await stream.aclose()
        assert seen == ["cancelled"]
        assert await worker.run(lambda: "free") == "free"
        worker.close()

    asyncio.run(main())


def test_a_consumer_dropped_unclosed_does_not_hold_the_worker(monkeypatch):
    monkeypatch.setattr(workers, "STALL_SECONDS", 0.2)

    async def main():
        worker, seen = ModelWorker("test"), []
        abandoned = worker.stream(lambda cancel: counting(cancel, seen), buffer=1)
        await anext(abandoned)  # then never read again, never closed
        started = time.monotonic()
        assert await asyncio.wait_for(worker.run(lambda: "free"), 5) == "free"
        assert time.monotonic() - started < 2 and seen == ["cancelled"]
        worker.close()

    asyncio.run(main())
