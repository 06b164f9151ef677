"""The OpenAI Realtime wire format: client events in, server events out, audio as base64 pcm16.

Pure functions, no I/O: the WebSocket adapter (`serve.realtime`) drives them. Both the beta
session shape (`voice`, `input_audio_format`, `turn_detection`) and the GA one (`audio.input.format
{type, rate}`, `audio.output.voice`) are read, and both are written back, so clients of either era
work. Extensions beyond OpenAI's vocabulary: `tags` (TTS style tags) in the session, and the VAD
settings `negative_threshold` and `start_ms` in `turn_detection`; `audio.output.speed` (GA) or
`speed` (beta) is the decoder's speaking rate, 0.5-2 (OpenAI's is 0.25-1.5).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from stepaudio.audio.vad import VADParams
from stepaudio.errors import OptionError, RequestError
from stepaudio.speed import check_speed
from stepaudio.tts.prompt import check_tags

DEFAULT_RATE = 24_000  # OpenAI Realtime's pcm16 rate
WIRE_RATES = (8_000, 48_000)  # the pcm16 rates a client may choose, telephone to studio
# The VAD settings a session may choose: probabilities, and times in ms that a conversation can use.
VAD_RANGES = {
    "threshold": (0, 1),
    "negative_threshold": (0, 1),
    "silence_duration_ms": (32, 10_000),
    "start_ms": (0, 5_000),
}
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class AudioFormat:
    input_rate: int = DEFAULT_RATE
    output_rate: int = DEFAULT_RATE


# --- audio -------------------------------------------------------------------------------------


def decode_pcm16(data: Any) -> np.ndarray:
    """Base64 little-endian 16-bit mono PCM -> float32 in [-1, 1)."""
    if not isinstance(data, str):
        raise RequestError("`audio` must be a base64 string of 16-bit little-endian mono PCM", "invalid_audio")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("`audio` is not valid base64", "invalid_audio") from None
    if len(raw) % 2:
        raise RequestError(f"pcm16 audio has 2 bytes per sample; got {len(raw)} bytes", "invalid_audio")
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def pcm16_bytes(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> 16-bit little-endian PCM (clipped, never wrapped)."""
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2").tobytes()


def encode_pcm16(samples: np.ndarray) -> str:
    return base64.b64encode(pcm16_bytes(samples)).decode("ascii")


class StreamResampler:
    """Resample a stream chunk by chunk with soxr's streaming state, so the chunks join without the
    edge clicks that resampling each chunk on its own leaves (one-shot `resample` pads every chunk)."""

    def __init__(self, from_rate: int, to_rate: int):
        import soxr

        self.passthrough = from_rate == to_rate
        self._stream = None if self.passthrough else soxr.ResampleStream(from_rate, to_rate, 1, "float32", "HQ")

    def step(self, samples: np.ndarray) -> np.ndarray:
        if self.passthrough:
            return samples
        return self._stream.resample_chunk(np.ascontiguousarray(samples, dtype=np.float32))

    def flush(self) -> np.ndarray:
        if self.passthrough:
            return np.zeros(0, np.float32)
        return self._stream.resample_chunk(np.zeros(0, np.float32), last=True)


# --- client events -----------------------------------------------------------------------------


def _not_json(constant: str):
    raise RequestError(f"{constant} is not a JSON number: send finite numbers", "invalid_json")


def parse_client_event(message: str) -> dict:
    try:
        event = json.loads(message, parse_constant=_not_json)  # Python's json would take NaN and Infinity
    except (json.JSONDecodeError, RecursionError):
        raise RequestError("the message is not valid JSON; send one JSON object per message", "invalid_json") from None
    if not isinstance(event, dict):
        raise RequestError("an event is a JSON object with a `type`", "invalid_event")
    if not isinstance(event.get("type"), str):
        raise RequestError("the event has no `type` string", "invalid_event")
    return event


def _object(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"`{name}` must be an object")
    return value


def _rate(fmt: Any, name: str) -> int | None:
    """The rate of a GA format object {type: "audio/pcm", rate}, or a beta format string."""
    if fmt is None:
        return None
    if isinstance(fmt, str):
        if fmt != "pcm16":
            raise RequestError(f"`{name}` {fmt!r} is not supported: only pcm16", "unsupported_format")
        return DEFAULT_RATE
    fmt = _object(fmt, name)
    if fmt.get("type", "audio/pcm") != "audio/pcm":
        raise RequestError(f"`{name}.type` {fmt.get('type')!r} is not supported: only audio/pcm", "unsupported_format")
    rate = fmt.get("rate", DEFAULT_RATE)
    if not isinstance(rate, int) or isinstance(rate, bool):
        raise RequestError(f"`{name}.rate` must be a whole number of Hz", "unsupported_format")
    if not WIRE_RATES[0] <= rate <= WIRE_RATES[1]:
        low, high = WIRE_RATES
        raise RequestError(f"`{name}.rate` {rate} Hz is outside {low}..{high} Hz", "unsupported_format", name + ".rate")
    return rate


def check_text(value: Any, name: str, max_chars: int) -> str:
    """A string a model may read: at most `max_chars`, no NUL or other control characters (tabs and
    line breaks aside), and valid Unicode (JSON can carry a lone surrogate, which nothing can encode)."""
    if not isinstance(value, str):
        raise RequestError(f"`{name}` must be a string", param=name)
    if len(value) > max_chars:
        raise RequestError(f"`{name}` is {len(value)} characters, over the limit of {max_chars}: send less", param=name)
    if control := _CONTROL_CHARACTERS.search(value):
        raise RequestError(
            f"`{name}` holds the control character U+{ord(control[0]):04X} at {control.start()}: send plain text",
            param=name,
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RequestError(
            f"`{name}` holds a lone surrogate (U+{ord(value[error.start]):04X}) at {error.start}: send valid Unicode",
            param=name,
        ) from None
    return value


def _text_or_none(value: Any, name: str, max_chars: int) -> str | None:
    return None if value is None else check_text(value, name, max_chars) or None


def _vad(turn_detection: dict, current: VADParams) -> VADParams:
    kind = turn_detection.get("type", "server_vad")
    if kind != "server_vad":
        raise RequestError(f"turn_detection type {kind!r} is not supported: use server_vad, or null for none")
    renamed = {"silence_duration_ms": "end_ms"}
    changes = {}
    for key, (low, high) in VAD_RANGES.items():
        if key in turn_detection:
            value = turn_detection[key]
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise RequestError(f"turn_detection.{key} must be a number", param=f"turn_detection.{key}")
            if not low <= value <= high:
                raise RequestError(
                    f"turn_detection.{key} {value} is outside {low}..{high}", param=f"turn_detection.{key}"
                )
            changes[renamed.get(key, key)] = type(getattr(current, renamed.get(key, key)))(value)
    if "threshold" in changes and "negative_threshold" not in changes:  # keep the hysteresis gap
        changes["negative_threshold"] = min(current.negative_threshold, changes["threshold"])
    if "end_ms" in changes and "pause_ms" not in changes:
        changes["pause_ms"] = min(current.pause_ms, changes["end_ms"])
    try:
        return dataclasses.replace(current, **changes)
    except OptionError as error:
        raise RequestError(str(error)) from None


def apply_session_update(session: Any, config: Any, audio: AudioFormat, max_chars: int) -> tuple[Any, AudioFormat]:
    """The SessionConfig and audio format after a `session.update`; unchanged fields stay."""
    session = _object(session, "session")
    ga_audio = _object(session.get("audio"), "session.audio")
    ga_in, ga_out = _object(ga_audio.get("input"), "audio.input"), _object(ga_audio.get("output"), "audio.output")
    changes: dict[str, Any] = {}
    if "instructions" in session:
        changes["instructions"] = _text_or_none(session["instructions"], "instructions", max_chars)
    voice = ga_out.get("voice", session.get("voice"))
    if voice is not None:
        changes["voice"] = _text_or_none(voice, "voice", 200)
    if "tags" in session:
        tags = session["tags"]
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise RequestError('`tags` must be a list of strings, e.g. ["快速1"]')
        changes["tags"] = check_tags(tags)  # an OptionError names the unknown tag
    speed = ga_out.get("speed", session.get("speed"))
    if speed is not None:
        if not isinstance(speed, (int, float)) or isinstance(speed, bool):
            raise RequestError("`audio.output.speed` must be a number, e.g. 1.25")
        changes["speed"] = check_speed(speed)
    has_turn = "turn_detection" in ga_in or "turn_detection" in session
    if has_turn:
        turn = ga_in["turn_detection"] if "turn_detection" in ga_in else session["turn_detection"]
        changes["turn_detection"] = turn is not None
        if turn is not None:
            changes["vad"] = _vad(_object(turn, "turn_detection"), config.vad)
    input_rate = _rate(ga_in.get("format", session.get("input_audio_format")), "audio.input.format")
    output_rate = _rate(ga_out.get("format", session.get("output_audio_format")), "audio.output.format")
    audio = AudioFormat(input_rate or audio.input_rate, output_rate or audio.output_rate)
    return dataclasses.replace(config, **changes), audio


def session_object(session_id: str, model: str, config: Any, audio: AudioFormat) -> dict:
    """The session as `session.created` / `session.updated` carry it (beta and GA fields)."""
    vad = config.vad
    turn = (
        {
            "type": "server_vad",
            "threshold": vad.threshold,
            "negative_threshold": vad.negative_threshold,
            "silence_duration_ms": vad.end_ms,
            "start_ms": vad.start_ms,
        }
        if config.turn_detection
        else None
    )
    return {
        "id": session_id,
        "object": "realtime.session",
        "model": model,
        "instructions": config.instructions,
        "voice": config.voice,
        "tags": list(config.tags),
        "speed": config.speed,
        "input_audio_format": "pcm16",
        "output_audio_format": "pcm16",
        "turn_detection": turn,
        "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": audio.input_rate}, "turn_detection": turn},
            "output": {
                "format": {"type": "audio/pcm", "rate": audio.output_rate},
                "voice": config.voice,
                "speed": config.speed,
            },
        },
    }


def user_text(item: Any, max_chars: int) -> str:
    """The text of a `conversation.item.create` user message (typed input instead of speech)."""
    item = _object(item, "item")
    if item.get("type", "message") != "message" or item.get("role") != "user":
        raise RequestError("only user messages can be added: {type: message, role: user, content: [...]}")
    content = item.get("content")
    if not isinstance(content, list):
        raise RequestError("`item.content` must be a list of parts")
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "text"):
            raise RequestError("only input_text parts can be added; send speech with input_audio_buffer.append")
        texts.append(_text_or_none(part.get("text"), "text", max_chars) or "")
    text = " ".join(t for t in texts if t).strip()
    if not text:
        raise RequestError("the message has no text")
    if len(text) > max_chars:
        raise RequestError(f"the message is {len(text)} characters, over the limit of {max_chars}")
    return text


# --- server events -----------------------------------------------------------------------------


def error_event(
    message: str, code: str, kind: str = "invalid_request_error", client_event_id: Any = None, param: str | None = None
) -> dict:
    return {
        "type": "error",
        "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": client_event_id},
    }


def server_event(event: Any) -> dict:
    """A typed event of `stepaudio.realtime.events` as OpenAI's JSON (audio deltas excepted: their
    samples are resampled and encoded by the adapter, which knows the client's rate)."""
    kind = event.type
    if kind == "response.created":
        return {
            "type": kind,
            "response": {"id": event.response_id, "object": "realtime.response", "status": "in_progress", "output": []},
        }
    if kind == "response.done":
        message = {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_audio", "transcript": event.text}],
        }
        response = {"id": event.response_id, "object": "realtime.response", "status": event.status, "output": [message]}
        return {"type": kind, "response": response}
    if kind == "error":  # a stage that failed (listen_failed, ...) or a request the session refused
        return error_event(
            event.message, event.code, "server_error" if event.code.endswith("_failed") else "invalid_request_error"
        )
    fields = dataclasses.asdict(event)
    if "item_id" in fields:
        fields["content_index"] = 0
    if "response_id" in fields:
        fields["output_index"] = 0
    return {"type": kind, **fields}
