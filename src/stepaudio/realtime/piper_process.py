"""Piper synthesis in a child process, so that a crash in its native code (espeak-ng, onnxruntime)
ends the child, not the server with every session in it: the request gets `SynthesisFailed` and a
new child serves the next one. The child is spawned (a fork of a process running torch threads is
unsafe) and replaced when its memory passes a bound, so what a long text made it allocate is given
back for good."""

from __future__ import annotations

import multiprocessing
import signal
import threading

import numpy as np

from stepaudio.errors import StepAudioError, SynthesisFailed
from stepaudio.realtime.memory import release_memory

MAX_RSS_BYTES = 1 << 30  # ~300 MB loaded, ~750 MB at the peak of a 400-phoneme run (the engine's cap)
START_SECONDS = 120.0  # loading the voice: seconds (onnx imports slowly), much longer on a loaded machine
REPLY_SECONDS = 120.0  # one piece: a few seconds; a child silent this long is stuck and is replaced


class PiperProcess:
    """Renders (voice, text, speed) in the child, one piece at a time for every thread that asks."""

    def __init__(self, warm_voice: str, max_rss_bytes: int = MAX_RSS_BYTES):
        """warm_voice: the voice the child loads before its first request, whose rate is `sample_rate`."""
        self.warm_voice = warm_voice
        self.max_rss_bytes = max_rss_bytes
        self._lock = threading.Lock()
        self._process = None
        self._closed = False
        with self._lock:
            self.sample_rate = self._ready()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def render(self, voice: str, text: str, speed: float) -> np.ndarray:
        with self._lock:
            self._ready()
            try:
                self._conn.send((voice, text, speed))
                if not self._conn.poll(REPLY_SECONDS):
                    raise TimeoutError
                kind, value = self._conn.recv()
            except (EOFError, OSError, TimeoutError):
                ended = self._stop()
                self._start()  # loads while the error is answered
                raise SynthesisFailed(f"the speech worker {ended} while speaking this text; it was restarted") from None
            self._bound_memory()
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        """Ends the child once the piece it renders is done; later requests fail."""
        with self._lock:
            self._closed = True
            if self._process is not None and self._process.is_alive():
                self._stop()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_serve, args=(child_conn, self.warm_voice), daemon=True)
        self._process.start()
        child_conn.close()  # the child's end lives in the child only: its death is EOF here
        self._rate = None

    def _ready(self) -> int:
        """A live child's sample rate, starting one if there is none (its rate is waited for once)."""
        if self._closed:
            raise SynthesisFailed("the speech worker was closed")
        if self._process is None or not self._process.is_alive():  # also one that died between requests
            self._start()
        if self._rate is None:
            try:
                if not self._conn.poll(START_SECONDS):
                    raise TimeoutError
                kind, value = self._conn.recv()
            except (EOFError, OSError, TimeoutError):
                raise SynthesisFailed(f"the speech worker {self._stop()} while loading its voice") from None
            if kind == "error":
                self._stop()
                raise value
            self._rate = value
        return self._rate

    def _stop(self) -> str:
        """Ends the child (an idle one leaves its loop at EOF; a busy or stuck one is killed); says how
        it ended."""
        self._conn.close()
        self._process.join(2)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
            return "stopped answering"
        code = self._process.exitcode
        return f"crashed ({signal.Signals(-code).name})" if code < 0 else f"exited ({code})"

    def _bound_memory(self) -> None:
        import psutil

        try:
            rss = psutil.Process(self._process.pid).memory_info().rss
        except psutil.Error:
            return  # gone: the next request starts another
        if rss > self.max_rss_bytes:
            self._stop()
            self._start()


def _serve(conn, warm_voice: str) -> None:
    """The child: loads the Piper voices, reports the warm voice's rate, then answers each request
    with ("ok", float32 samples) or ("error", a StepAudioError) until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    voices = _Voices()
    conn.send(_answer(voices.load, warm_voice))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        conn.send(_answer(voices.render, *request))
        release_memory()  # what the run freed goes back (stepaudio.realtime.memory), not only at a restart


class _Voices:
    def load(self, warm_voice: str) -> int:
        from stepaudio.tts_engines import get_engine

        self.engine = get_engine("piper")
        self.voices = {voice.name: voice for voice in self.engine.voices()}
        return self.engine.render(self.voices[warm_voice], "Hello.", 1.0, seed=0)[1]

    def render(self, voice: str, text: str, speed: float) -> np.ndarray:
        return self.engine.render(self.voices[voice], text, speed, seed=0)[0].astype(np.float32)


def _answer(work, *args) -> tuple[str, object]:
    try:
        return "ok", work(*args)
    except StepAudioError as error:
        return "error", error
    except Exception as error:  # a Python-level failure of Piper: the child lives on
        return "error", SynthesisFailed(f"Piper failed on this text: {type(error).__name__}: {error}")
