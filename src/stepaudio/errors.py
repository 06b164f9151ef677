"""Typed errors whose messages tell the user what to do next.

Everything the package raises on purpose derives from `StepAudioError`, so a server or the CLI can
catch one type, show the message and keep running.
"""


class StepAudioError(Exception):
    """Base class of every error stepaudio raises on purpose."""


class AudioError(StepAudioError, ValueError):
    """Audio that cannot be used: unreadable, empty, corrupt, too long, absurd sample rate, NaN/Inf."""


class ModelNotFound(StepAudioError, FileNotFoundError):
    """A model or one of its files is not installed or not where it was expected."""


class CheckpointError(StepAudioError, ValueError):
    """A model file exists but is malformed or in a layout we do not know."""


class DataError(StepAudioError, ValueError):
    """A corpus, manifest, transcript or synthesis option that cannot be used."""


class TokenError(StepAudioError, ValueError):
    """Speech tokens that cannot be used: a malformed `<audio_K>` string, an id out of range, a broken
    2+3 group, the wrong shape, none at all."""


class OptionError(StepAudioError, ValueError):
    """A setting out of its range, or a request that cannot be served as asked (e.g. too long a message)."""


class RequestError(OptionError):
    """A client's request refused with a machine-readable `code` (OpenAI's error codes, e.g.
    `input_audio_buffer_commit_empty`), which the server passes on with the message."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None):
        """param: the request field at fault, as OpenAI's errors name it."""
        super().__init__(message)
        self.code = code
        self.param = param


class SynthesisFailed(StepAudioError, RuntimeError):
    """Our own speech worker died or stalled on a request (a crash in a native library); it was
    restarted, so the next request is served. A server fault (5xx), not the client's."""


class EngineError(StepAudioError, RuntimeError):
    """An LM engine that cannot run as asked: vLLM not installed, a `vllm serve` that does not answer,
    a model vLLM cannot load, more GPUs asked for than there are, or an engine that failed mid-answer."""
