"""Freed memory goes back to the system (#32: the server's RSS stayed at its soak peak)."""

import asyncio
import threading
import time

import numpy as np
import pytest
from realtime_fakes import fake_engine, silence, speech

import stepaudio.realtime.session as session_module
from stepaudio.audio.vad import VADParams
from stepaudio.realtime.events import ResponseDone
from stepaudio.realtime.memory import Trimmer, glibc_malloc_trim
from stepaudio.realtime.session import RealtimeSession, SessionConfig


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.skipif(glibc_malloc_trim() is None, reason="malloc_trim is glibc's")
def test_a_trim_gives_back_what_a_thread_freed_under_live_blocks():
    """What a model stage does to malloc, small: a thread fills its arena with 64 KB blocks (under the
    mmap threshold), keeps a few of them and frees the rest. The free pages under the kept blocks stay
    resident until the trim."""
    kept = []

    def stage():
        blocks = [bytearray(64 * 1024) for _ in range(2400)]  # 150 MiB, every page touched
        kept.extend(blocks[::48] + blocks[-1:])

    trim = glibc_malloc_trim()
    trim()  # free pages left by earlier tests would be reused without counting in the RSS
    before = rss_bytes()
    worker = threading.Thread(target=stage)
    worker.start()
    worker.join()
    freed = rss_bytes()
    assert freed - before > 100 << 20  # the freed 147 MiB are still resident

    trimmer = Trimmer(trim, min_interval=0.1, settle=0.0)
    trimmer.request()
    wait_for(lambda: trimmer.trims == 1)
    assert freed - rss_bytes() > 100 << 20
    assert len(kept) == 51


def test_requests_are_rate_limited_and_the_last_is_not_lost():
    calls = []
    trimmer = Trimmer(lambda: calls.append(time.monotonic()), min_interval=0.3, settle=0.05)
    for _ in range(20):  # a burst: one trim at once, one more for the requests made during it
        trimmer.request()
        time.sleep(0.01)
    wait_for(lambda: len(calls) == 2)
    time.sleep(0.5)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.3
    trimmer.request()  # long after: carried out
    wait_for(lambda: len(calls) == 3)
    assert Trimmer(None).request() is None  # without glibc: nothing, no thread


def test_a_finished_answer_and_a_closed_session_release_memory(monkeypatch):
    requests = []
    monkeypatch.setattr(session_module, "release_memory", lambda: requests.append(session.state))

    async def main():
        nonlocal session
        session = RealtimeSession(fake_engine(), SessionConfig(vad=VADParams(start_ms=100, pause_ms=200, end_ms=500)))
        done = asyncio.Event()

        async def collect():
            async for event in session.events():
                if isinstance(event, ResponseDone):
                    done.set()

        collector = asyncio.create_task(collect())
        for samples in (speech(0.6), silence(0.8)):
            for start in range(0, len(samples), 320):
                await session.append_audio(np.asarray(samples[start : start + 320]), 16_000)
        await asyncio.wait_for(done.wait(), 10)
        answered = len(requests)
        await session.close()
        await collector
        return answered

    session = None
    answered = asyncio.run(asyncio.wait_for(main(), 30))
    assert answered == 1  # at the answer's response.done
    assert len(requests) == 2  # and at close
