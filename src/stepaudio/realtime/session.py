"""One real-time conversation: the controller that turns user audio into answers.

An explicit state machine (`State`, `TRANSITIONS`) drives everything:

    listening --pause--> paused_speculating --speech resumed--> listening   (speculation cancelled)
    listening | paused_speculating | interrupted --end of turn--> responding  (speculation committed)
    responding --first audio out--> speaking --answer done--> listening
    responding | speaking --user speaks over it (barge-in)--> interrupted

Every stage is an asyncio task (pipecat style): cancelling the task is how a speculation dies when the
user goes on, and how an answer stops on barge-in. Models run in worker threads and stop through
their `threading.Event` (`stepaudio.realtime.worker`). A stage that fails ends its response with
`Error` + `ResponseDone(failed)`; the session goes on listening.

Times: `SpeechStarted.audio_start_ms` / `SpeechStopped.audio_end_ms` are positions in the input audio
(all audio appended since the session began). Audio leaves paced to real time plus `output_lead_ms`,
as a player consumes it, so that a barge-in stops what the user hears within a bounded time and the
context keeps only the words actually played.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from stepaudio.audio import check_audio, to_mono
from stepaudio.audio.io import check_sample_rate, max_audio_seconds
from stepaudio.audio.vad import CONVERSATION_VAD, FRAME_SECONDS, SAMPLE_RATE, EventKind, VADEvent, VADParams
from stepaudio.errors import OptionError, RequestError, StepAudioError
from stepaudio.realtime.context import ContextManager, Turn
from stepaudio.realtime.events import (
    AudioDelta,
    Error,
    Event,
    ResponseCreated,
    ResponseDone,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptDone,
)
from stepaudio.realtime.listen import Heard
from stepaudio.realtime.memory import release_memory
from stepaudio.realtime.speech import PlaybackClock, SentenceSplitter, SpokenText
from stepaudio.realtime.worker import LISTEN_THREADS, StageThreads, call_in_thread, iterate_in_thread
from stepaudio.tts.prompt import split_tags

DEFAULT_INSTRUCTIONS = "You are a helpful voice assistant. Answer in one or two short sentences."
# tokens of the KV cache kept free for the answer: this many, or the responder's whole answer length when
# longer (up to a quarter of the cache)
ANSWER_ROOM = 256
PREROLL_SECONDS = 0.3  # audio kept from before the VAD's speech start (its onset is a little late)
AUDIO_PIECE_SECONDS = 0.1  # output audio leaves in pieces this long, so a barge-in stops it promptly
CLOSE_TIMEOUT_SECONDS = 5.0  # close() waits this long at most for cancelled model stages to return


class State(str, enum.Enum):
    LISTENING = "listening"  # waiting for, or hearing, the user
    PAUSED_SPECULATING = "paused_speculating"  # the user paused: an answer is being prepared, unseen
    RESPONDING = "responding"  # the answer is being written, no audio out yet
    SPEAKING = "speaking"  # answer audio is going out
    INTERRUPTED = "interrupted"  # the user spoke over the answer: output stopped, context cut


TRANSITIONS = {
    State.LISTENING: {State.PAUSED_SPECULATING, State.RESPONDING},
    State.PAUSED_SPECULATING: {State.LISTENING, State.RESPONDING},
    State.RESPONDING: {State.SPEAKING, State.LISTENING, State.INTERRUPTED},
    State.SPEAKING: {State.LISTENING, State.INTERRUPTED},
    State.INTERRUPTED: {State.LISTENING, State.PAUSED_SPECULATING, State.RESPONDING},
}


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    voice: str | None = None  # a TTS voice name; None: the TTS default
    tags: tuple[str, ...] = ()  # TTS style tags of the answers, e.g. ("快速1",)
    speed: float = 1.0  # speaking rate of the answers (the decoder's time-scaling)
    instructions: str | None = None  # the system prompt (pinned in the context); None: DEFAULT_INSTRUCTIONS
    turn_detection: bool = True  # server VAD ends turns; False: the client calls commit()
    vad: VADParams = CONVERSATION_VAD
    speculative: bool = True  # start answering at a pause, commit at end of turn
    # the pause that starts a speculative answer (the VAD's pause_ms)
    speculate_after_ms: int = CONVERSATION_VAD.pause_ms
    barge_in_ms: int = 250  # user speech this long during the answer interrupts it (coughs do not)
    output_lead_ms: int | None = 300  # audio sent ahead of real time; None: as fast as it is made

    def vad_params(self) -> VADParams:
        return replace(self.vad, pause_ms=min(self.speculate_after_ms, self.vad.end_ms))


# The path of an answer to the player, in order: the per-stage split of its latency (bench/realtime.py)
MILESTONES = ("transcript", "first_token", "first_sentence", "first_speech", "first_audio")


@dataclass
class SessionMetrics:
    """What the benchmarks read: speculation outcomes, listening work left at end of turn, barge-ins."""

    speculations: int = 0
    committed: int = 0
    listen_after_end_ms: list[float] = field(default_factory=list)  # end of turn -> transcript ready
    barge_in_ms: list[float] = field(default_factory=list)  # barge-in decided -> output stopped
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("listen", "respond", "speak"), 0.0))
    # per response: when (the session's clock) each of MILESTONES was first reached
    milestones: dict[str, dict[str, float]] = field(default_factory=dict)

    @contextlib.contextmanager
    def timing(self, stage: str):
        """Adds the wall time of the block to `stage_seconds[stage]` (model work, waits for CPU included)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[stage] += time.perf_counter() - start

    def timed(self, stage: str, items: Iterator) -> Iterator:
        with self.timing(stage):
            yield from items


@dataclass
class _UserTurn:
    item_id: str
    stream: object  # the listener's ListenStream
    start_ms: int
    over_output: bool  # began while an answer was out: it must last barge_in_ms to count
    hearing: asyncio.Task | None = None  # hear() started at the last pause (void if speech resumed)
    samples: int = 0  # user audio appended while the turn is open, in 16 kHz samples


@dataclass
class _Response:
    id: str
    item_id: str
    user_item: str | None
    committed: bool
    lead: float | None  # seconds of audio sent ahead of real time
    held: list[Event] = field(default_factory=list)  # events of a speculation, sent at commit
    audio: asyncio.Queue = field(default_factory=asyncio.Queue)  # (pcm, rate) pieces, None at the end
    text: str = ""
    spoken: SpokenText = field(default_factory=SpokenText)
    clock: PlaybackClock = field(default_factory=PlaybackClock)
    user_turn: Turn | None = None
    user_added: bool = False
    task: asyncio.Task | None = None
    pump: asyncio.Task | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)  # set at commit
    reached: dict[str, float] = field(default_factory=dict)  # MILESTONES -> clock time


class _StageError(StepAudioError):
    def __init__(self, code: str, error: Exception):
        super().__init__(f"{code.split('_')[0]}: {error}")
        self.code = code


async def _stage(code: str, work: Awaitable):
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception as error:
        raise _StageError(code, error) from error


class RealtimeSession:
    def __init__(
        self, engine, config: SessionConfig | None = None, clock=time.monotonic, max_turn_seconds: float | None = None
    ):
        """engine: a `ChatEngine` (shared); one session per conversation; create it inside the event loop.
        max_turn_seconds: the user audio one turn may hold (default: the audio length cap, `max_audio_seconds`)."""
        self.engine, self.config, self._clock = engine, config or SessionConfig(), clock
        self.max_turn_seconds = max_audio_seconds() if max_turn_seconds is None else max_turn_seconds
        self._next_config: SessionConfig | None = None
        self._state = State.LISTENING
        self._out: asyncio.Queue[Event | None] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._vad = engine.vad.stream(self.config.vad_params())
        self._responder = engine.responder.session()
        capacity = self._responder.capacity
        room = max(ANSWER_ROOM, min(engine.responder.answer_tokens, capacity // 4))
        self.context = ContextManager(
            engine.responder.prompt_tokens,
            capacity - room,
            self.config.instructions or DEFAULT_INSTRUCTIONS,
        )
        self.metrics = SessionMetrics()
        self._samples = 0  # 16 kHz input samples received
        self._preroll: deque[np.ndarray] = deque()
        self._resampler: tuple[int, object] | None = None
        self._turn: _UserTurn | None = None
        self._speculation: _Response | None = None
        self._response: _Response | None = None
        self._committing: asyncio.Task | None = None  # a commit()ed turn being transcribed
        self._spoken: dict[str, SpokenText] = {}  # assistant item -> its sentences and their audio
        self._closed = False
        self._input_worker = ThreadPoolExecutor(1, thread_name_prefix="stepaudio-input")  # VAD + listener, in order
        self._threads = StageThreads()  # the model stages' threads

    # --- the interface ----------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    async def append_audio(self, samples: np.ndarray, sample_rate: int) -> None:
        """User audio (float32 mono, any rate), in order; await each call before the next. Audio that
        would take the open turn past `max_turn_seconds` is refused (RequestError), the turn kept."""
        incoming = round(len(samples) * SAMPLE_RATE / check_sample_rate(sample_rate))
        if self._turn is not None and self._turn.samples + incoming > self.max_turn_seconds * SAMPLE_RATE:
            held = self._turn.samples / SAMPLE_RATE
            raise RequestError(
                f"the user turn holds {held:.1f} s of audio, the limit is {self.max_turn_seconds:g} s: "
                "commit it or clear it before sending more",
                "input_audio_buffer_full",
            )
        samples = self._to_16k(samples, sample_rate)
        self._preroll.append(samples)
        keep = (self._vad.params.start_ms / 1000 + PREROLL_SECONDS) * SAMPLE_RATE
        while sum(map(len, self._preroll)) - len(self._preroll[0]) > keep:
            self._preroll.popleft()
        if not self.config.turn_detection and self._turn is None:
            self._turn = self._new_turn(self._input_ms(), over_output=False)
        if self._turn is not None:
            self._turn.samples += incoming
        loop = asyncio.get_running_loop()
        events = await loop.run_in_executor(self._input_worker, self._take_input, self._turn, samples)
        for event in events:
            await self._on_vad(event)
        await self._check_barge_in()

    async def commit(self) -> None:
        """End the user's turn now: it is transcribed and joins the context (and, with turn
        detection on, is answered)."""
        if self._turn is None:
            raise RequestError("no user audio to commit", "input_audio_buffer_commit_empty")
        turn, self._turn = self._turn, None
        if self.config.turn_detection:
            await self._end_turn(turn)
            return
        hearing = self._hear(turn)
        self._committing = asyncio.create_task(self._record_user_turn(turn.item_id, hearing))

    async def clear(self) -> None:
        """Forget the user audio not yet committed (and any speculation built on it)."""
        self._turn = None
        self._preroll.clear()
        if self._speculation is not None:
            await self._drop_speculation()

    async def create_response(self, text: str | None = None) -> None:
        """Answer the conversation: `text` as a new user message, or the context as it is (a committed
        audio turn already joined it)."""
        if self._response is not None:
            self._send(Error("a response is in progress; cancel it first", "conversation_already_has_active_response"))
            return
        if self._committing is not None:
            with contextlib.suppress(Exception):
                await self._committing
            self._committing = None
        self._apply_next_config()
        if text is not None:
            if not text.strip():
                self._send(Error("empty text: nothing to answer", "invalid_value"))
                return
            turn = Turn(self._new_id("item"), "user", text.strip(), 0.0)
            self._response = self._start_response(turn.item_id, committed=True, typed=turn)
        else:
            self._response = self._start_response(None, committed=True)
        self._set_state(State.RESPONDING)

    async def cancel_response(self) -> None:
        if self._response is not None:
            await self._stop(self._response)
            self._set_state(State.LISTENING)

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """The client played the assistant item `item_id` up to `audio_end_ms` (and stopped there):
        keep only those words in the context; an answer still going out stops."""
        spoken = self._spoken.get(item_id)
        if spoken is None:
            raise RequestError(f"no assistant item {item_id!r} to truncate", "item_not_found")
        response = self._response
        if response is not None and response.item_id == item_id:
            await self._stop(response)
        self.context.cut(item_id, spoken.heard(audio_end_ms / 1000))

    def update(self, config: SessionConfig) -> None:
        """New settings from the next turn on (a turn in progress keeps the old ones)."""
        self._next_config = config
        if self._turn is None and self._response is None:
            self._apply_next_config()

    async def events(self) -> AsyncIterator[Event]:
        while (event := await self._out.get()) is not None:
            yield event

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for response in (self._speculation, self._response):
            if response is not None:
                await self._stop(response, announce=False)
        self._input_worker.shutdown(wait=False)
        await self._threads.join(CLOSE_TIMEOUT_SECONDS)
        self._out.put_nowait(None)
        release_memory()  # carried out a moment later, once the server has dropped the session and its buffers

    # --- turns --------------------------------------------------------------------------------------

    def _take_input(self, turn: _UserTurn | None, samples: np.ndarray) -> list[VADEvent]:
        """In the session's input thread: the open turn's listener and the VAD hear the samples."""
        if turn is not None:
            turn.stream.step(samples)
        self._samples += len(samples)
        return self._vad.step(samples) if self.config.turn_detection else []

    async def _on_vad(self, event: VADEvent) -> None:
        ms = round(event.time * 1000)
        turn = self._turn
        if event.kind is EventKind.SPEECH_STARTED:
            self._apply_next_config()
            self._turn = self._new_turn(ms, over_output=self._response is not None)
            if not self._turn.over_output:  # over an answer it is announced once it counts as a barge-in
                self._send(SpeechStarted(ms))
        elif turn is None:
            if event.kind is EventKind.SPEECH_RESUMED and self._response is not None:  # after a backchannel
                self._turn = self._new_turn(ms, over_output=True)
            return
        elif turn.over_output:  # a pause or end before barge_in_ms: a cough or a backchannel
            self._turn = None
        elif event.kind is EventKind.PAUSE:
            turn.hearing = self._hear(turn)
            if self.config.speculative and self._response is None and self._speculation is None:
                self.metrics.speculations += 1
                self._speculation = self._start_response(turn.item_id, committed=False, hearing=turn.hearing)
                self._set_state(State.PAUSED_SPECULATING)
        elif event.kind is EventKind.SPEECH_RESUMED:
            turn.hearing = None
            if self._speculation is not None:
                await self._drop_speculation()
        elif event.kind is EventKind.END_OF_TURN:
            self._turn = None
            self._send(SpeechStopped(ms))
            await self._end_turn(turn)

    async def _end_turn(self, turn: _UserTurn) -> None:
        """Answer the turn: commit the speculation made at its last pause, or start answering now."""
        ended = self._clock()
        hearing = turn.hearing or self._hear(turn)
        hearing.add_done_callback(lambda _: self.metrics.listen_after_end_ms.append((self._clock() - ended) * 1000))
        if self._response is not None:  # e.g. a commit() while answering: the new turn wins
            await self._stop(self._response)
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            self.metrics.committed += 1
            self._response = speculation
            self._release(speculation)
        else:
            self._response = self._start_response(turn.item_id, committed=True, hearing=hearing)
        self._set_state(State.RESPONDING)

    async def _check_barge_in(self) -> None:
        turn, response = self._turn, self._response
        if turn is None or not turn.over_output or self._voiced_ms(turn.start_ms) < self.config.barge_in_ms:
            return
        turn.over_output = False
        self._send(SpeechStarted(turn.start_ms))
        if response is not None:
            decided = self._clock()
            self._set_state(State.INTERRUPTED)
            await self._stop(response)
            self.metrics.barge_in_ms.append((self._clock() - decided) * 1000)

    def _voiced_ms(self, since_ms: int) -> float:
        """Milliseconds of speech the VAD heard since `since_ms` (silence in between not counted)."""
        first = int(since_ms / 1000 / FRAME_SECONDS)
        floor = self._vad.params.negative_threshold
        return sum(p >= floor for p in self._vad.probabilities[first:]) * FRAME_SECONDS * 1000

    def _new_turn(self, start_ms: int, over_output: bool) -> _UserTurn:
        turn = _UserTurn(self._new_id("item"), self.engine.listener.stream(), start_ms, over_output)
        if self.config.turn_detection:  # the audio since a little before the speech began
            keep = int((self._input_ms() - start_ms) / 1000 * SAMPLE_RATE + PREROLL_SECONDS * SAMPLE_RATE)
            preroll = np.concatenate(list(self._preroll))
            turn.stream.step(preroll[-keep:] if keep < len(preroll) else preroll)
        return turn

    def _hear(self, turn: _UserTurn) -> asyncio.Task:
        def hear() -> Heard:
            with self.metrics.timing("listen"):
                return turn.stream.hear()

        return asyncio.create_task(call_in_thread(hear, self._threads, LISTEN_THREADS))

    async def _record_user_turn(self, item_id: str, hearing: asyncio.Task) -> None:
        try:
            heard = await _stage("listen_failed", hearing)
        except _StageError as error:
            self._send(Error(str(error), error.code))
            return
        self._send(TranscriptDone(item_id, heard.transcript))
        if heard.transcript.strip():
            self.context.add(Turn(item_id, "user", heard.transcript, heard.seconds))

    # --- responses ----------------------------------------------------------------------------------

    def _start_response(
        self, user_item: str | None, committed: bool, hearing: asyncio.Task | None = None, typed: Turn | None = None
    ) -> _Response:
        lead = None if self.config.output_lead_ms is None else self.config.output_lead_ms / 1000
        response = _Response(self._new_id("resp"), self._new_id("item"), user_item, committed, lead)
        self.metrics.milestones[response.id] = response.reached
        response.task = asyncio.create_task(self._respond(response, hearing, typed))
        if committed:
            self._release(response)
        return response

    async def _respond(self, r: _Response, hearing: asyncio.Task | None, typed: Turn | None) -> None:
        """Listen (await the transcript), write the answer, speak it sentence by sentence."""
        try:
            new_user = None
            if hearing is not None:
                heard: Heard = await _stage("listen_failed", asyncio.shield(hearing))
                self._reach(r, "transcript")
                self._emit(r, TranscriptDone(r.user_item, heard.transcript))
                if not heard.transcript.strip():  # noise, not words: nothing to answer
                    await r.released.wait()
                    self._finish(r, None)
                    return
                new_user = self.engine.responder.user_content(heard)
                r.user_turn = Turn(r.user_item, "user", heard.transcript, heard.seconds)
            elif typed is not None:
                new_user, r.user_turn = typed.text, typed
            self._emit(r, ResponseCreated(r.id))
            try:
                messages = self.context.messages(new_user)
            except OptionError as error:  # the turn alone is over the context budget
                raise _StageError("respond_failed", error) from error
            self._add_user_turn(r)
            sentences: asyncio.Queue[str | None] = asyncio.Queue()
            stages = [asyncio.create_task(_stage("respond_failed", self._write(r, messages, sentences)))]
            stages.append(asyncio.create_task(self._speak(r, sentences)))
            try:
                await asyncio.gather(*stages)
            finally:
                for task in stages:
                    task.cancel()
            await r.audio.put(None)
            await r.released.wait()
            await r.pump
            self._finish(r, "completed")
        except Exception as error:  # a stage failed (or a bug): this response ends, the session goes on
            code = error.code if isinstance(error, _StageError) else "server_error"
            self._emit(r, Error(str(error), code))
            await r.released.wait()
            if r.pump is not None:
                r.pump.cancel()
            self._finish(r, "failed")

    async def _write(self, r: _Response, messages: list, sentences: asyncio.Queue) -> None:
        splitter = SentenceSplitter()
        async for piece in iterate_in_thread(
            lambda cancel: self.metrics.timed("respond", self._responder.reply(messages, cancel)), self._threads
        ):
            if "\n\n" in (r.text + piece).strip():  # a spoken answer is one paragraph (no sign-offs)
                break
            self._reach(r, "first_token")
            r.text += piece
            self._emit(r, TextDelta(r.id, r.item_id, piece))
            for sentence in splitter.push(piece):
                self._reach(r, "first_sentence")
                sentences.put_nowait(sentence)
        for sentence in splitter.flush():
            sentences.put_nowait(sentence)
        sentences.put_nowait(None)

    async def _speak(self, r: _Response, sentences: asyncio.Queue) -> None:
        speaker, config = self.engine.speaker, self.config
        # the TTS streams each sentence through its decoder as the LM speaks (official weights' default,
        # the release's whole-text call, would wait for the whole sentence); Piper speaks by sentence already
        speak = getattr(speaker, "stream_sentences", speaker.stream)
        rate = speaker.sample_rate
        piece = int(AUDIO_PIECE_SECONDS * rate)
        tags, leading = config.tags, ""
        while (sentence := await sentences.get()) is not None:
            if leading is not None:  # tags leading the answer style all of it (the release's TTS gets it whole)
                tags, said = split_tags(leading + sentence, config.tags)
                if not said.strip():
                    leading += sentence  # the tags alone so far: nothing to say yet
                    continue
                sentence, leading = said.strip(), None
            r.spoken.start(sentence)
            chunks = iterate_in_thread(
                lambda cancel, s=sentence, t=tags: self.metrics.timed(
                    "speak", speak(s, voice=config.voice, tags=t, cancel=cancel, speed=config.speed)
                ),
                self._threads,
            )
            async for chunk in _stage_iter("speak_failed", chunks):
                self._reach(r, "first_speech")
                chunk = np.asarray(chunk, dtype=np.float32)
                for start in range(0, len(chunk), piece):
                    r.spoken.add_audio(len(chunk[start : start + piece]) / rate)
                    await r.audio.put((chunk[start : start + piece], rate))

    async def _play(self, r: _Response) -> None:
        """Send the answer's audio paced as a real-time player consumes it (plus the lead)."""
        while (item := await r.audio.get()) is not None:
            pcm, rate = item
            if r.lead is not None:
                wait = r.clock.ends() - self._clock() - r.lead
                if wait > 0:
                    await asyncio.sleep(wait)
            r.clock.send(len(pcm) / rate, self._clock())
            if self._state is State.RESPONDING:
                self._set_state(State.SPEAKING)
            self._reach(r, "first_audio")
            self._send(AudioDelta(r.id, r.item_id, pcm, rate))

    def _reach(self, r: _Response, milestone: str) -> None:
        r.reached.setdefault(milestone, self._clock())

    def _emit(self, r: _Response, event: Event) -> None:
        """Out now, or held until a speculation is committed."""
        if r.committed:
            self._send(event)
        else:
            r.held.append(event)

    def _release(self, r: _Response) -> None:
        """Commit a response: its held events go out, its audio starts playing."""
        r.committed = True
        for event in r.held:
            self._send(event)
        r.held.clear()
        self._add_user_turn(r)
        r.pump = asyncio.create_task(self._play(r))
        r.released.set()

    def _add_user_turn(self, r: _Response) -> None:
        if r.committed and r.user_turn is not None and not r.user_added and r.user_turn.text:
            r.user_added = True
            self.context.add(r.user_turn)

    def _finish(self, r: _Response, status: str | None) -> None:
        """The end of a committed response (status None: it never began, as for a turn of noise);
        the assistant turn joins the context as heard."""
        if status in ("completed", "cancelled") and r.text.strip():
            self.context.add(Turn(r.item_id, "assistant", r.text, r.clock.sent))
            self._spoken[r.item_id] = r.spoken
        if status is not None:
            self._send(ResponseDone(r.id, status, r.text))
            release_memory()  # the answer's temporaries are free: give the pages back (malloc keeps them)
        if self._response is r:
            self._response = None
            if self._state is not State.INTERRUPTED:
                self._set_state(State.LISTENING)
        if self._turn is not None and self._turn.over_output:  # speech begun over the answer is a turn now
            self._turn.over_output = False
            self._send(SpeechStarted(self._turn.start_ms))

    async def _stop(self, r: _Response, announce: bool = True) -> None:
        """Cancel a response's tasks; a committed one that was still going ends with the words played."""
        tasks = [task for task in (r.task, r.pump) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if r is self._speculation:
            self._speculation = None
        elif r is self._response:
            r.text = r.spoken.heard(r.clock.played(self._clock()))
            self._add_user_turn(r)
            if announce:
                self._finish(r, "cancelled")
            else:
                self._response = None

    async def _drop_speculation(self) -> None:
        await self._stop(self._speculation)
        if self._state is State.PAUSED_SPECULATING:
            self._set_state(State.LISTENING)

    # --- small helpers ------------------------------------------------------------------------------

    def _set_state(self, state: State) -> None:
        if state is not self._state and state not in TRANSITIONS[self._state]:
            raise RuntimeError(f"bad state transition {self._state.value} -> {state.value}")
        self._state = state

    def _send(self, event: Event) -> None:
        if not self._closed:
            self._out.put_nowait(event)

    def _new_id(self, kind: str) -> str:
        return f"{kind}_{next(self._ids)}"

    def _input_ms(self) -> int:
        return round(self._samples * 1000 / SAMPLE_RATE)

    def _apply_next_config(self) -> None:
        if self._next_config is None:
            return
        self.config, self._next_config = self._next_config, None
        self._vad.params = self.config.vad_params()
        self.context.system = self.config.instructions or DEFAULT_INSTRUCTIONS

    def _to_16k(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Streaming resampling (one soxr stream per input rate, so chunk edges stay clean)."""
        samples = to_mono(check_audio(np.asarray(samples, dtype=np.float32), sample_rate))
        if sample_rate == SAMPLE_RATE:
            return samples
        if self._resampler is None or self._resampler[0] != sample_rate:
            import soxr

            self._resampler = (sample_rate, soxr.ResampleStream(sample_rate, SAMPLE_RATE, 1, dtype="float32"))
        return self._resampler[1].resample_chunk(samples)


async def _stage_iter(code: str, items: AsyncIterator):
    try:
        async for item in items:
            yield item
    except asyncio.CancelledError:
        raise
    except Exception as error:
        raise _StageError(code, error) from error
