"""Giving the memory a conversation freed back to the system.

The model stages run in threads of their own (`stepaudio.realtime.worker`), and glibc's malloc serves
threads from several arenas (up to 8 per core). The temporaries of the encoder, the LM and the TTS
(up to tens of MB each, most under glibc's mmap threshold once a few large blocks have been freed)
land in those arenas and, freed, stay there: glibc gives an arena's memory back to the system only
from its top, so a few live blocks above keep every free page under them resident. Without this the
server's RSS stays at the peak of its busiest moment long after the sessions are gone (#32: 1.3 ->
2.0 GB; docs/serve-soak.md has the measurements).

`release_memory()` has `malloc_trim(0)`, which hands the free pages of every arena back (madvise),
run in a background thread, `SETTLE_SECONDS` after the request (so that what the caller frees just
after, as a closed session's own buffers, is included) and at most once every `MIN_INTERVAL_SECONDS`:
a request in between is carried out when the interval ends, so the last one is never lost. A trim
costs about 1 ms when little is free and ~0.3 s per GB returned. Without glibc (macOS, musl) it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

MIN_INTERVAL_SECONDS = 5.0
SETTLE_SECONDS = 0.5


def glibc_malloc_trim() -> Callable[[], object] | None:
    """`malloc_trim(0)` of this process's C library, None where there is none (not glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class Trimmer:
    """Runs `trim()` in a daemon thread when asked, rate-limited as the module doc says."""

    def __init__(
        self,
        trim: Callable[[], object] | None,
        min_interval: float = MIN_INTERVAL_SECONDS,
        settle: float = SETTLE_SECONDS,
    ):
        self.trim, self.min_interval, self.settle = trim, min_interval, settle
        self.trims = 0  # trims carried out
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        if self.trim is None:
            return
        self._wanted.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="stepaudio-trim")
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            time.sleep(self.settle)
            self._wanted.clear()
            self.trim()
            self.trims += 1
            time.sleep(self.min_interval)


TRIMMER = Trimmer(glibc_malloc_trim())


def release_memory() -> None:
    """Soon give the memory malloc holds free back to the system (see the module doc); returns at once."""
    TRIMMER.request()
