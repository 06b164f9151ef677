"""The controller against fakes: speculation, commit, barge-in, stage failures, manual turns."""

import asyncio
import time

import pytest
from realtime_fakes import FakeListener, FakeResponder, ToneSpeaker, fake_engine, silence, speech

from stepaudio.audio.vad import VADParams
from stepaudio.errors import RequestError
from stepaudio.realtime.events import (
    AudioDelta,
    Error,
    ResponseCreated,
    ResponseDone,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptDone,
)
from stepaudio.realtime.session import RealtimeSession, SessionConfig, State

VAD = VADParams(start_ms=100, pause_ms=200, end_ms=500)
CHUNK = 320  # 20 ms at 16 kHz


class Run:
    """A session with every event recorded (with its arrival time) as the test drives it."""

    def __init__(self, engine, **config):
        self.session = RealtimeSession(engine, SessionConfig(vad=VAD, **config))
        self.events: list = []
        self._collector = asyncio.create_task(self._collect())

    async def _collect(self):
        async for event in self.session.events():
            self.events.append((time.monotonic(), event))

    def of(self, kind) -> list:
        return [event for _, event in self.events if isinstance(event, kind)]

    async def feed(self, samples, realtime: bool = False):
        for start in range(0, len(samples), CHUNK):
            await self.session.append_audio(samples[start : start + CHUNK], 16_000)
            await asyncio.sleep(CHUNK / 16_000 if realtime else 0)

    async def until(self, condition, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.01)

    async def done(self) -> ResponseDone:
        await self.until(lambda: self.of(ResponseDone))
        return self.of(ResponseDone)[-1]

    async def close(self):
        await self.session.close()
        await self._collector


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_speculation_is_cancelled_when_speech_resumes():
    async def main():
        responder = FakeResponder(delay=0.05)
        r = Run(fake_engine(responder=responder))
        await r.feed(speech(0.6))
        await r.feed(silence(0.25))  # a pause: speculation starts
        assert r.session.state is State.PAUSED_SPECULATING
        await r.until(lambda: responder.prompts)
        await r.feed(speech(0.5))  # the user goes on: the speculation dies unseen
        assert r.session.state is State.LISTENING
        assert not r.of(ResponseCreated) and not r.of(TextDelta) and not r.of(AudioDelta)
        await r.feed(silence(0.6))  # end of turn
        done = await r.done()
        await r.close()
        assert done.status == "completed" and done.text == responder.answer
        assert len(r.of(ResponseCreated)) == 1
        assert r.session.metrics.speculations == 2 and r.session.metrics.committed == 1
        assert [type(e).__name__ for e in (r.of(SpeechStarted)[0], r.of(SpeechStopped)[0])]

    run(main())


def test_speculation_is_committed_at_end_of_turn_without_new_work():
    async def main():
        responder, listener = FakeResponder(), FakeListener()
        r = Run(fake_engine(responder=responder, listener=listener))
        await r.feed(speech(0.6))
        await r.feed(silence(0.25))
        await r.until(lambda: responder.prompts)
        await asyncio.sleep(0.2)  # the speculation writes and speaks its answer, held back
        assert not r.of(ResponseCreated)
        await r.feed(silence(0.4))  # end of turn: committed
        done = await r.done()
        await r.close()
        assert done.status == "completed" and done.text == responder.answer
        assert len(responder.prompts) == 1 and listener.hears == 1  # nothing was redone
        assert r.session.metrics.committed == 1
        kinds = [type(event) for _, event in r.events]
        assert kinds.index(SpeechStopped) < kinds.index(TranscriptDone) < kinds.index(ResponseCreated)
        assert kinds.index(ResponseCreated) < kinds.index(AudioDelta) < kinds.index(ResponseDone)
        user, assistant = r.session.context.turns
        assert (user.role, user.text, assistant.role, assistant.text) == (
            "user",
            listener.transcript,
            "assistant",
            responder.answer,
        )

    run(main())


def test_without_speculation_nothing_is_written_before_end_of_turn():
    async def main():
        responder = FakeResponder()
        r = Run(fake_engine(responder=responder), speculative=False)
        await r.feed(speech(0.6))
        await r.feed(silence(0.3))
        await asyncio.sleep(0.1)
        assert not responder.prompts and r.session.state is State.LISTENING
        await r.feed(silence(0.3))
        assert (await r.done()).status == "completed"
        await r.close()
        assert r.session.metrics.speculations == 0

    run(main())


def test_barge_in_stops_the_answer_and_cuts_the_context_to_what_was_played():
    async def main():
        responder = FakeResponder(answer="one two three four five six. Seven eight nine ten eleven twelve.")
        r = Run(fake_engine(responder=responder, speaker=ToneSpeaker(seconds_per_word=0.2)), output_lead_ms=100)
        await r.feed(speech(0.5))
        await r.feed(silence(0.6))
        await r.until(lambda: r.of(AudioDelta))
        assert r.session.state is State.SPEAKING
        await r.feed(silence(0.6), realtime=True)
        await r.feed(speech(0.4), realtime=True)  # the user talks over the answer
        done = await r.done()
        assert done.status == "cancelled" and r.session.state is State.INTERRUPTED
        heard = done.text.split()
        assert 2 <= len(heard) < 12 and responder.answer.startswith(" ".join(heard))
        assert r.session.context.turns[-1].text == done.text
        stopped_at = max(t for t, event in r.events if isinstance(event, AudioDelta))
        assert r.session.metrics.barge_in_ms and r.session.metrics.barge_in_ms[0] < 200
        await r.feed(silence(0.6))  # the interrupting turn is answered in turn
        await r.until(lambda: len(r.of(ResponseDone)) == 2)
        await r.close()
        assert stopped_at < max(t for t, event in r.events if isinstance(event, SpeechStarted)) + 0.2
        assert len(r.of(SpeechStarted)) == 2

    run(main())


def test_a_cough_during_the_answer_does_not_interrupt():
    async def main():
        r = Run(fake_engine(speaker=ToneSpeaker(seconds_per_word=0.1)), output_lead_ms=100)
        await r.feed(speech(0.5))
        await r.feed(silence(0.6))
        await r.until(lambda: r.of(AudioDelta))
        await r.feed(speech(0.15), realtime=True)  # longer than the VAD's start, shorter than barge_in_ms
        await r.feed(silence(0.3), realtime=True)
        done = await r.done()
        await r.close()
        assert done.status == "completed" and len(r.of(SpeechStarted)) == 1

    run(main())


@pytest.mark.parametrize(
    "part, code",
    [("listener", "listen_failed"), ("responder", "respond_failed"), ("speaker", "speak_failed")],
)
def test_a_failing_stage_ends_the_turn_with_an_error_and_the_session_goes_on(part, code):
    async def main():
        parts = {"listener": FakeListener(), "responder": FakeResponder(), "speaker": ToneSpeaker()}
        parts[part].fail = True
        r = Run(fake_engine(**parts))
        await r.feed(speech(0.5))
        await r.feed(silence(0.6))
        done = await r.done()
        assert done.status == "failed" and [e.code for e in r.of(Error)] == [code]
        assert r.session.state is State.LISTENING
        parts[part].fail = False
        await r.feed(speech(0.5))
        await r.feed(silence(0.6))
        await r.until(lambda: len(r.of(ResponseDone)) == 2)
        await r.close()
        assert r.of(ResponseDone)[-1].status == "completed"

    run(main())


def test_client_turns_commit_and_text_responses():
    async def main():
        listener, responder = FakeListener(transcript="hello there"), FakeResponder()
        r = Run(fake_engine(listener=listener, responder=responder), turn_detection=False)
        await r.feed(speech(0.5))
        await r.session.commit()
        await r.session.create_response()
        assert (await r.done()).status == "completed"
        await r.session.create_response("and tomorrow?")
        await r.until(lambda: len(r.of(ResponseDone)) == 2)
        with pytest.raises(RequestError) as nothing:
            await r.session.commit()
        await r.close()
        assert r.of(TranscriptDone)[0].transcript == "hello there"
        assert responder.prompts[1][-1] == {"role": "user", "content": "and tomorrow?"}
        assert [m["role"] for m in responder.prompts[1]] == ["system", "user", "assistant", "user"]
        assert nothing.value.code == "input_audio_buffer_commit_empty" and not r.of(Error)

    run(main())


def test_cancel_response_and_truncate():
    async def main():
        responder = FakeResponder(answer="one two three four five six seven eight.")
        r = Run(fake_engine(responder=responder, speaker=ToneSpeaker(seconds_per_word=0.2)), turn_detection=False)
        await r.session.create_response("count for me")
        await r.until(lambda: r.of(AudioDelta))
        await asyncio.sleep(0.3)
        await r.session.cancel_response()
        done = await r.done()
        assert done.status == "cancelled" and r.session.state is State.LISTENING
        await r.session.truncate(done_item := r.of(AudioDelta)[0].item_id, 200)  # the client heard one word
        await r.close()
        assert r.session.context.find(done_item).text == "one"

    run(main())


def test_a_turn_over_the_context_budget_fails_alone():
    async def main():
        r = Run(fake_engine(responder=FakeResponder(capacity_tokens=290)), turn_detection=False)  # budget: 34
        await r.session.create_response(" ".join(["word"] * 25))  # with the system prompt: 43
        assert (await r.done()).status == "failed" and r.of(Error)[0].code == "respond_failed"
        await r.session.create_response("short")
        await r.until(lambda: len(r.of(ResponseDone)) == 2)
        await r.close()
        assert r.of(ResponseDone)[-1].status == "completed"

    run(main())


def test_new_settings_apply_from_the_next_turn_and_clear_drops_uncommitted_audio():
    async def main():
        responder = FakeResponder(delay=0.02)
        r = Run(fake_engine(responder=responder), turn_detection=False, instructions="first rules")
        await r.session.create_response("hello")
        await r.until(lambda: responder.prompts)
        r.session.update(SessionConfig(vad=VAD, turn_detection=False, instructions="second rules"))
        assert r.session.config.instructions == "first rules"  # the answer in progress keeps them
        await r.done()
        await r.session.create_response("again")
        await r.until(lambda: len(r.of(ResponseDone)) == 2)
        assert [prompt[0]["content"] for prompt in responder.prompts] == ["first rules", "second rules"]
        await r.feed(speech(0.3))
        await r.session.clear()
        with pytest.raises(RequestError, match="no user audio"):
            await r.session.commit()
        await r.close()

    run(main())


def test_answers_are_spoken_in_the_session_voice_tags_and_speed():
    async def main():
        speaker = ToneSpeaker()
        r = Run(fake_engine(speaker=speaker), turn_detection=False, voice="Alice", tags=("快速1",), speed=1.25)
        await r.session.create_response("hello")
        await r.done()
        await r.close()
        assert speaker.spoken and set(speaker.styles) == {("Alice", ("快速1",), 1.25)}

    run(main())


def test_tags_leading_an_answer_style_all_of_it_and_are_not_spoken():
    """A chat answer with its tags inline, as the release hands it to its TTS: read, not said."""

    class Tagged(FakeResponder):
        def session(self):
            responder = self

            class Session:
                capacity = responder.capacity_tokens

                def reply(self, messages, cancel):
                    yield from ["(高兴1)", "\n", "(慢速1)It is sunny today. ", "Take a hat (really)."]

            return Session()

    async def main():
        speaker = ToneSpeaker()
        r = Run(fake_engine(speaker=speaker, responder=Tagged()), turn_detection=False, tags=("快速1",))
        await r.session.create_response("hello")
        done = await r.done()
        await r.close()
        assert done.text.startswith("(高兴1)")  # the answer's text stays as written
        assert speaker.spoken == ["It is sunny today.", "Take a hat (really)."]
        assert {tags for _, tags, _ in speaker.styles} == {("高兴1", "慢速1", "快速1")}

    run(main())


def test_the_state_machine_refuses_a_transition_it_does_not_have():
    async def main():
        session = RealtimeSession(fake_engine())
        with pytest.raises(RuntimeError, match="listening -> speaking"):
            session._set_state(State.SPEAKING)
        await session.close()

    run(main())
