"""The OpenAI-compatible HTTP routes: speech, transcriptions, chat completions, models, health.

Request and response shapes follow OpenAI's API, so its clients (the `openai` package, agent
frameworks) work when pointed at this server. Differences: `pcm` speech is 24 kHz 16-bit mono as
OpenAI's, `wav` is at the model's own rate; `tags` (TTS style tags) is an extra field of speech
requests and of chat `audio`; GET /v1/voices lists the voices and tags for the web page.
"""

from __future__ import annotations

import base64
import contextlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from stepaudio.errors import RequestError
from stepaudio.lm.prompts import TAGS
from stepaudio.rates import SAMPLE_RATE
from stepaudio.serve.models import STYLE_TAGS, Models
from stepaudio.serve.protocol import DEFAULT_RATE, StreamResampler, check_text, pcm16_bytes
from stepaudio.serve.security import bearer_token, key_matches
from stepaudio.serve.settings import Limits
from stepaudio.serve.workers import ModelWorker, ServerBusy

ENGINE_HEADER = "X-Speech-Engine"  # which engine spoke: piper, step-audio-tts or mini-tts (the speaker's `engine`)
T = TypeVar("T")


def models_of(request: Request) -> Models:
    return request.app.state.models


def require_key(request: Request) -> None:
    if not key_matches(request.app.state.settings.api_key, bearer_token(request.headers)):
        raise HTTPException(401, "missing or wrong API key: send `Authorization: Bearer KEY`")


router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
public = APIRouter()
ModelsDep = Annotated[Models, Depends(models_of)]


def limits_of(request: Request) -> Limits:
    return request.app.state.settings.limits


LimitsDep = Annotated[Limits, Depends(limits_of)]


def _text(value, name: str, limit: int) -> str:
    if not check_text(value, name, limit).strip():
        raise RequestError(f"`{name}` is empty: give some text", param=name)
    return value


def _admit(worker: ModelWorker, limits: Limits) -> ModelWorker:
    """The worker, if its queue has room for one more request; else 503 (try again later)."""
    if worker.pending > limits.max_queued_requests:
        raise ServerBusy(f"{worker.pending} requests are waiting for this model; try again in a few seconds")
    return worker


# --- health and models -------------------------------------------------------------------------


@public.get("/health")
async def health(request: Request) -> dict:
    slots = request.app.state.slots
    settings = request.app.state.settings
    return {
        "status": "ok",
        "model": settings.model,
        "sessions": slots.active,
        "max_sessions": slots.limit,
        "api_key_required": settings.api_key is not None,
    }


@router.get("/models")
async def list_models(models: ModelsDep) -> dict:
    return {"object": "list", "data": [{"id": models.name, "object": "model", "created": 0, "owned_by": "stepaudio"}]}


@router.get("/voices")
async def voices(models: ModelsDep) -> dict:
    """Voices and style tags (for speech requests and real-time sessions)."""
    return {"voices": models.voice_names(), "default": models.speaker.default_voice, "tags": STYLE_TAGS}


# --- speech ------------------------------------------------------------------------------------


class SpeechRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None  # any name: the server speaks with the model it loaded
    input: str
    voice: str | None = Field(None, max_length=200)
    response_format: Literal["wav", "pcm"] = "wav"
    tags: list[str] = Field(default_factory=list, max_length=len(TAGS))
    speed: float | None = None


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, np.clip(samples, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


@router.post("/audio/speech")
async def speech(body: SpeechRequest, models: ModelsDep, limits: LimitsDep) -> Response:
    text = _text(body.input, "input", limits.max_text_chars)
    _admit(models.speaker_worker, limits)
    chunks = _speak(models, text, body.voice, tuple(body.tags), 1.0 if body.speed is None else body.speed)
    first = await _first(chunks)
    if first is None:
        raise RequestError("the text has nothing to speak (no words, only punctuation or symbols)", param="input")
    rate, headers = models.speaker.sample_rate, {ENGINE_HEADER: models.speaker.engine}
    if body.response_format == "pcm":
        return StreamingResponse(_pcm_stream(first, chunks, rate), media_type="audio/pcm", headers=headers)
    async with contextlib.aclosing(chunks):
        pcm = np.concatenate([first] + [chunk async for chunk in chunks])
    return Response(wav_bytes(pcm, rate), media_type="audio/wav", headers=headers)


async def _first(stream: AsyncIterator[T]) -> T | None:
    """The first item of a model's stream, awaited before answering, so that a bad voice, tag or
    prompt fails while a 4xx can still be sent; the stream is closed (its work stopped) if it fails."""
    try:
        return await anext(stream, None)
    except BaseException:
        await stream.aclose()
        raise


def _speak(
    models: Models, text: str, voice: str | None, tags: tuple[str, ...], speed: float = 1.0
) -> AsyncIterator[np.ndarray]:
    """The speech of `text`, chunk by chunk; chunks without samples (a sentence of mere punctuation)
    are left out, so a text with nothing to say gives no chunk at all."""
    speaker = models.speaker

    def chunks(cancel) -> Iterator[np.ndarray]:
        return (
            chunk for chunk in speaker.stream(text, voice=voice, tags=tags, cancel=cancel, speed=speed) if chunk.size
        )

    return models.speaker_worker.stream(chunks)


async def _pcm_stream(first: np.ndarray, rest: AsyncIterator[np.ndarray], rate: int) -> AsyncIterator[bytes]:
    resampler = StreamResampler(rate, DEFAULT_RATE)
    try:
        yield pcm16_bytes(resampler.step(first))
        async for chunk in rest:
            yield pcm16_bytes(resampler.step(chunk))
        yield pcm16_bytes(resampler.flush())
    finally:
        await rest.aclose()  # the client left early: stop synthesis


# --- transcriptions ----------------------------------------------------------------------------


@router.post("/audio/transcriptions", response_model=None)
async def transcriptions(
    models: ModelsDep,
    limits: LimitsDep,
    file: Annotated[UploadFile, File()],
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form()] = None,
    response_format: Annotated[Literal["json", "text"], Form()] = "json",
) -> dict | PlainTextResponse:
    from stepaudio.audio import load_audio

    if language not in (None, "", "en"):
        raise RequestError(f"language {language!r}: this server transcribes English (en) only", param="language")
    samples, _ = load_audio(await file.read(), SAMPLE_RATE)
    heard = await _admit(models.listener_worker, limits).run(_hear, models.listener, samples)
    if response_format == "text":
        return PlainTextResponse(heard.transcript)
    return {"text": heard.transcript}


def _hear(listener, samples: np.ndarray):
    """A whole file through the real-time listener: the same models and path as a spoken turn."""
    stream = listener.stream()
    stream.step(samples)
    return stream.hear()


# --- chat completions --------------------------------------------------------------------------


class ChatAudio(BaseModel):
    voice: str | None = Field(None, max_length=200)
    format: Literal["wav", "pcm16"] = "wav"
    tags: list[str] = Field(default_factory=list, max_length=len(TAGS))


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[dict]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.9, gt=0, le=1)
    seed: int | None = Field(None, ge=-(2**63), lt=2**64)  # what a torch generator takes
    stream: bool = False
    modalities: list[Literal["text", "audio"]] = Field(default_factory=lambda: ["text"])
    audio: ChatAudio | None = None


def _message_text(message: dict, index: int, limit: int) -> tuple[str, str]:
    role, content = message.get("role"), message.get("content")
    if role not in ("system", "developer", "user", "assistant"):
        raise RequestError(f"message role {role!r}: use system, user or assistant", param=f"messages.{index}.role")
    if isinstance(content, list):
        if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            raise RequestError(
                "only text content parts are understood; send speech to /v1/audio/transcriptions",
                param=f"messages.{index}.content",
            )
        content = "".join(str(p.get("text", "")) for p in content)
    return ("system" if role == "developer" else role), _text(content, f"messages.{index}.content", limit)


def _conversation(body: ChatRequest, limits: Limits) -> tuple[str | None, list[dict], str]:
    """(system prompt, earlier turns, the user message to answer)."""
    if not body.messages:
        raise RequestError("messages is empty: send at least one user message", param="messages")
    if len(body.messages) > limits.max_messages:
        raise RequestError(
            f"{len(body.messages)} messages, over the limit of {limits.max_messages}: send the recent ones",
            param="messages",
        )
    parsed = [_message_text(m, i, limits.max_text_chars) for i, m in enumerate(body.messages)]
    if (chars := sum(len(text) for _, text in parsed)) > limits.max_prompt_chars:
        raise RequestError(
            f"the messages hold {chars} characters, over the limit of {limits.max_prompt_chars}: send less",
            param="messages",
        )
    system = "\n".join(text for role, text in parsed if role == "system") or None
    turns = [{"role": role, "content": text} for role, text in parsed if role != "system"]
    if not turns or turns[-1]["role"] != "user":
        raise RequestError("the last message must be the user's", param="messages")
    return system, turns[:-1], turns[-1]["content"]


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatRequest, models: ModelsDep, limits: LimitsDep, response: Response
) -> dict | StreamingResponse:
    from stepaudio.lm.sampling import Sampling

    system, history, question = _conversation(body, limits)
    wants_audio = "audio" in body.modalities
    if wants_audio and body.stream:
        raise RequestError(
            "streamed audio answers come from the real-time WebSocket /v1/realtime; use stream=false", param="stream"
        )
    asked = body.max_completion_tokens or body.max_tokens
    max_tokens = asked or min(models.chat.answer_tokens, limits.max_answer_tokens)  # the model's own default
    if max_tokens > limits.max_answer_tokens:
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise RequestError(f"{field} {max_tokens} is over the limit of {limits.max_answer_tokens}", param=field)
    sampling = Sampling(temperature=body.temperature, top_p=body.top_p, seed=body.seed, max_new_tokens=max_tokens)
    chat = models.chat
    finish = {"reason": "stop"}  # "length" when the answer is cut at max_request_seconds

    def reply(cancel) -> Iterator[str]:
        deadline = time.monotonic() + limits.max_request_seconds
        for piece in _conversation_for(chat, sampling, system, history).reply(question, cancel):
            yield piece
            if time.monotonic() > deadline:
                finish["reason"] = "length"
                return

    completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    pieces = _admit(models.chat_worker, limits).stream(reply)
    if body.stream:
        first = await _first(pieces) or ""
        sse = _sse(first, pieces, completion_id, created, models.name, finish)
        return StreamingResponse(sse, media_type="text/event-stream")
    async with contextlib.aclosing(pieces):
        text = "".join([piece async for piece in pieces])
    message: dict = {"role": "assistant", "content": text}
    if wants_audio:
        message["audio"] = await _spoken(models, text, body.audio or ChatAudio())
        response.headers[ENGINE_HEADER] = models.speaker.engine
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": models.name,
        "choices": [{"index": 0, "message": message, "finish_reason": finish["reason"]}],
    }


def _conversation_for(chat, sampling, system: str | None, history: list[dict]):
    from stepaudio.lm.conversation import Conversation

    conversation = Conversation(chat, sampling, system, max_len=2048)
    conversation.history = list(history)
    return conversation


async def _spoken(models: Models, text: str, audio: ChatAudio) -> dict:
    if not text.strip():
        raise HTTPException(500, "the model gave an empty answer; there is nothing to speak")
    async with contextlib.aclosing(_speak(models, text, audio.voice, tuple(audio.tags))) as stream:
        chunks = [chunk async for chunk in stream]
    pcm, rate = np.concatenate(chunks or [np.zeros(0, np.float32)]), models.speaker.sample_rate
    if audio.format == "wav":
        data = wav_bytes(pcm, rate)
    else:
        resampler = StreamResampler(rate, DEFAULT_RATE)
        data = pcm16_bytes(np.concatenate([resampler.step(pcm), resampler.flush()]))
    return {
        "id": f"audio_{uuid.uuid4().hex[:24]}",
        "data": base64.b64encode(data).decode("ascii"),
        "transcript": text,
        "expires_at": int(time.time()) + 3600,
    }


async def _sse(
    first: str, pieces: AsyncIterator[str], completion_id: str, created: int, model: str, finish: dict
) -> AsyncIterator[str]:
    import json

    def chunk(delta: dict, finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        return f"data: {json.dumps({**body, 'choices': [choice]}, ensure_ascii=False)}\n\n"

    try:
        yield chunk({"role": "assistant", "content": first})
        async for piece in pieces:
            yield chunk({"content": piece})
        yield chunk({}, finish["reason"])
        yield "data: [DONE]\n\n"
    finally:
        await pieces.aclose()
