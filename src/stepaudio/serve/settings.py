"""What a server allows: bind address, API key, CORS origins and the limits every client is held to.

The defaults are safe for a machine shared with others: loopback only, no cross-origin access, and
limits that keep one client from taking the memory or the CPU of all the others.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from stepaudio.errors import OptionError

API_KEY_ENV = "STEPAUDIO_API_KEY"


@dataclass(frozen=True)
class Limits:
    max_sessions: int = 4  # real-time connections at once; the next one is refused with an error event
    max_message_bytes: int = 1 << 20  # one WebSocket message (1 MiB: about 16 s of 24 kHz pcm16 in base64)
    max_upload_bytes: int = 25 << 20  # one HTTP request body (OpenAI's own upload limit)
    max_text_chars: int = 4096  # text to speak, or one chat message
    max_session_seconds: float = 1800.0  # a real-time connection is closed after this long
    idle_timeout_seconds: float = 300.0  # ... or after this long without a message from the client

    def __post_init__(self):
        for name, value in vars(self).items():
            if not value > 0:
                raise OptionError(f"limit {name.replace('_', '-')} must be positive, got {value}")


@dataclass(frozen=True)
class ServeSettings:
    model: str = "mini"
    api_key: str | None = None  # None: no key asked for (fine on loopback)
    cors_origins: tuple[str, ...] = ()  # web pages on these origins may call the API; none by default
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def with_env_key(cls, api_key: str | None = None, **fields) -> ServeSettings:
        """The key given, else $STEPAUDIO_API_KEY (so it need not appear in the process list)."""
        return cls(api_key=api_key or os.environ.get(API_KEY_ENV) or None, **fields)
