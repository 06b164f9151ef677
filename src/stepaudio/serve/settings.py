"""What a server allows: bind address, API key, CORS origins and the limits every client is held to.

The defaults are safe for a machine shared with others: loopback only, no cross-origin access, and
limits that keep one client from taking the memory or the CPU of all the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from stepaudio.audio.io import MAX_SECONDS_ENV, max_audio_seconds
from stepaudio.errors import OptionError

API_KEY_ENV = "STEPAUDIO_API_KEY"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _limit(default, help: str, aliases: tuple[str, ...] = ()):
    """A limit's default and the `--help` line of its flag (`max_text_chars` -> `--max-text-chars`)."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help, "aliases": aliases})
    return field(default=default, metadata={"help": help, "aliases": aliases})


@dataclass(frozen=True)
class Limits:
    max_sessions: int = _limit(4, "real-time sessions at once; the next one is refused with an error event")
    max_connections: int = _limit(64, "open HTTP and WebSocket connections at once; past it, 503")
    max_message_bytes: int = _limit(1 << 20, "largest WebSocket message (1 MiB: about 16 s of 24 kHz pcm16)")
    max_upload_bytes: int = _limit(25 << 20, "largest HTTP request body (OpenAI's own upload limit)")
    max_text_chars: int = _limit(4096, "longest text to speak, chat message or session instructions")
    max_messages: int = _limit(256, "messages in one chat request")
    max_prompt_chars: int = _limit(32_768, "characters of all the messages of one chat request together")
    max_answer_tokens: int = _limit(
        2048, "largest max_tokens of a chat request (the default: the model's own, 2048 for Step-Audio-Chat, else 256)"
    )
    max_request_seconds: float = _limit(60.0, 'a chat answer stops after this long (finish_reason "length")')
    max_queued_requests: int = _limit(16, "requests waiting for one model; past it, 503 (try again later)")
    max_turn_seconds: float = _limit(
        max_audio_seconds, f"user audio one real-time turn may hold (the audio cap, ${MAX_SECONDS_ENV})"
    )
    max_session_seconds: float = _limit(1800.0, "a real-time session ends after this long")
    idle_timeout_seconds: float = _limit(
        120.0, "... or after this long without a message from its client", aliases=("--idle-timeout",)
    )
    header_timeout_seconds: float = _limit(10.0, "a connection that sent no complete request by then is closed")

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise OptionError(f"--{name.replace('_', '-')} must be positive, got {value}")


@dataclass(frozen=True)
class ServeSettings:
    model: str = "mini"
    api_key: str | None = None  # None: no key asked for (fine on loopback)
    cors_origins: tuple[str, ...] = ()  # web pages on these origins may call the API; none by default
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host header names served (DNS rebinding); "*": any
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def with_env_key(cls, api_key: str | None = None, **fields) -> ServeSettings:
        """The key given, else $STEPAUDIO_API_KEY (so it need not appear in the process list)."""
        return cls(api_key=api_key or os.environ.get(API_KEY_ENV) or None, **fields)
