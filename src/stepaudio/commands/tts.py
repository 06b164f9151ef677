"""`stepaudio tts`: speak text in a built-in voice or one cloned from a prompt recording.

stepaudio tts "Hello there, how are you today?" -o hi.wav   # mini: a Piper voice speaks (--tts)
echo "你好，今天天气很好。" | stepaudio tts -o ni.wav --tts model --voice mandarin --tags 慢速1
stepaudio tts "(高兴1)Hello there." -o happy.wav --model DIR   # official weights: their TTS
stepaudio tts "A little faster." -o f.wav --speed 1.25
stepaudio tts "Cloned." -o c.wav --tts model --prompt-wav me.wav --prompt-text "What I say in me.wav."
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings

from stepaudio.commands.lm_engine_options import add_lm_engine_args, engine_options
from stepaudio.commands.voice_chat_options import add_tts_arg
from stepaudio.device import DEVICES, pick_device


def read_text(argument: str | None) -> str:
    return sys.stdin.read() if argument in (None, "-") else argument


def cmd_tts(args: argparse.Namespace) -> None:
    import numpy as np

    from stepaudio.audio import check_output_path, open_audio_writer
    from stepaudio.commands.voice_chat_options import speaks_with_piper
    from stepaudio.errors import OptionError
    from stepaudio.outputs import note_replacing
    from stepaudio.speed import check_speed
    from stepaudio.tts.pipeline import SpeechNote
    from stepaudio.tts.prompt import check_tags, split_tags

    text = read_text(args.text)
    if not text.strip():
        raise OptionError("no text to speak: give it as an argument or on stdin")
    tags, speed = check_tags(args.tags), check_speed(args.speed)  # bad options fail before the models load
    all_tags, words = split_tags(text.strip(), tags)
    if not words.strip():
        raise OptionError("no text to speak after the style tags: give the words after them")
    note_replacing(check_output_path(args.output, [args.prompt_wav]))
    pick_device(args.device)  # so does asking for a GPU where there is none
    engine_options(args)  # and a bad --engine setting
    piper = speaks_with_piper(args.tts, args.model)
    if piper:
        check_piper_can_speak(args, words)  # so does asking Piper for what only the TTS LM does
    started = time.monotonic()
    if piper:
        speaker = piper_speaker(args)
        say_engine(args, speaker, all_tags)
        chunks = speaker.stream(words, tags=all_tags, speed=speed)  # Piper speaks sentence by sentence
    else:
        from stepaudio.tts import TTS

        speaker = TTS.load(args.model, args.device, engine_options(args))
        say_engine(args, speaker, all_tags)
        speak = speaker.stream_sentences if args.stream else speaker.stream  # official: the release's call
        chunks = speak(
            text,
            args.voice,
            tags,
            prompt_wav=args.prompt_wav,
            prompt_text=args.prompt_text,
            seed=args.seed,
            speed=speed,
        )
    loaded = time.monotonic()
    seconds, first, rate = 0.0, None, speaker.sample_rate
    try:
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always", SpeechNote)
            with open_audio_writer(args.output, rate, growing=args.stream) as out:
                for chunk in chunks:
                    if first is None:
                        first = time.monotonic() - loaded
                    out.write(np.clip(chunk, -1.0, 1.0))
                    if args.stream:
                        out.flush()  # the file grows as audio arrives
                    seconds += len(chunk) / rate
    finally:
        if hasattr(speaker, "close"):  # Piper's worker process
            speaker.close()
    for note in notes:  # what the release's call does silently (speech cut at the model's positions, ...)
        if issubclass(note.category, SpeechNote):
            print(f"stepaudio tts: note: {note.message}", file=sys.stderr)
        else:
            warnings.showwarning(note.message, note.category, note.filename, note.lineno)
    spent = time.monotonic() - loaded
    report = f"{args.output}: {seconds:.2f} s of speech in {spent:.2f} s (RTF {spent / max(seconds, 1e-9):.2f}"
    report += f", first audio after {first:.2f} s" if first is not None else ""
    print(report + f"; models loaded in {loaded - started:.1f} s)")


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _why_piper(args: argparse.Namespace) -> str:
    """Why Piper speaks, for --tts auto (empty for --tts piper, which asked for it)."""
    from stepaudio.models.measured import MINI_TTS_WER

    if args.tts == "piper":
        return ""
    return (
        f"with mini a Piper voice speaks by default, because the mini TTS LM is not intelligible yet "
        f"(WER {MINI_TTS_WER:.2f}); "
    )


def check_piper_can_speak(args: argparse.Namespace, words: str) -> None:
    """What only the TTS LM does, asked of Piper: an OptionError that says so and names --tts model."""
    from stepaudio.errors import OptionError

    lm = "--tts model speaks it with the model's TTS LM (with mini: experimental, not intelligible yet)"
    if args.prompt_wav or args.prompt_text:
        raise OptionError(f"{_why_piper(args)}Piper cannot clone a voice from --prompt-wav; {lm}")
    if _CJK.search(words):
        raise OptionError(f"{_why_piper(args)}the Piper voice speaks English only; {lm}")


def piper_speaker(args: argparse.Namespace):
    """The Piper voice of --voice; not installed, or an unknown voice: an OptionError that says what to do."""
    from stepaudio.commands.voice_chat_options import no_piper_hint
    from stepaudio.errors import OptionError
    from stepaudio.realtime.piper_speaker import PiperSpeaker
    from stepaudio.tts_engines import EngineUnavailable

    try:
        return PiperSpeaker(args.voice)
    except EngineUnavailable as missing:
        raise OptionError(f"{_why_piper(args)}{no_piper_hint(missing)}") from None
    except OptionError as unknown:
        raise OptionError(f"{_why_piper(args)}{unknown}; --tts model speaks the model's own voices") from None


def say_engine(args: argparse.Namespace, speaker, tags) -> None:
    """Which engine speaks, on stderr (and what it leaves out)."""
    from stepaudio.lm.prompts import SPEED_TAGS
    from stepaudio.models.measured import MINI_TTS_WER

    if speaker.engine == "piper":
        line = f"spoken by Piper ({speaker.default_voice})"
        if args.tts == "auto":
            line += f": the mini TTS LM is not intelligible yet (WER {MINI_TTS_WER:.2f}); --tts model uses it"
        unrendered = [tag for tag in tags if tag not in SPEED_TAGS]
        if unrendered:
            line += f"; Piper renders the speed tags only, not {' '.join(unrendered)}"
    elif speaker.engine == "mini-tts":
        line = f"spoken by the mini TTS LM: experimental, not intelligible yet (WER {MINI_TTS_WER:.2f})"
    else:
        line = "spoken by Step-Audio-TTS-3B"
    print(f"stepaudio tts: {line}", file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "tts",
        help="text -> speech in a voice (built-in, registered or cloned)",
        description="Speak text (English, Mandarin; Cantonese with --tags 粤语) with the TTS language model and "
        "the speech decoder. Who speaks is --tts: by default the official TTS with official weights, and with mini "
        "a Piper voice (English; `stepaudio install piper`), because the mini TTS LM is not intelligible yet "
        "(--tts model uses it, experimental); stderr says which engine spoke. "
        "With official weights the whole text is spoken as the release speaks it: read as "
        "written, in one LM call (up to the model's 8192 positions; longer speech is cut there, as in the "
        "release, with a note on stderr), decoded in one flow call; --stream speaks it sentence by sentence "
        "instead. mini speaks sentence by sentence either way. Style tags are the official set: emotions "
        "高兴1 高兴2 生气1 生气2 悲伤1 撒娇1, languages 中文 英文 韩语 日语 四川话 粤语 广东话, music RAP 哼唱, "
        "speed 慢速1 慢速2 快速1 快速2 (mini was trained with the language tags but does not follow them "
        "reliably yet; its decoder renders the speed tags, which the official LM follows itself; the rest "
        "need the official weights). "
        "Give them with --tags, or inline at the start of the text as the official release does: "
        '"(高兴1)Hello there.", "（RAP）我踏上自由的征途" (half- or full-width parentheses, one tag in each); '
        "they are read as instructions, never spoken. As in the release, RAP or 哼唱 selects the music vocoder "
        "and its system prompt when it is the first tag (a music tag given with --tags counts as the first). "
        "Parentheses that do not hold exactly one of these tags are not tags: inline, they are plain text and "
        'spoken ("(note) hi" says "note hi"); in --tags, an error. '
        "--speed time-scales the speech in the decoder, with any model.",
    )
    parser.add_argument("text", nargs="?", help="text to speak; read from stdin when absent or '-'")
    parser.add_argument(
        "-o", "--output", required=True, help="output audio file (22.05 kHz; .wav, .flac, .ogg or .mp3)"
    )
    voice = parser.add_argument_group("voice (default: the model's default voice)")
    voice.add_argument("--voice", help="a voice name from `stepaudio voices list` (Piper speaking: a Piper voice)")
    voice.add_argument(
        "--prompt-wav", help="clone the voice of this recording (3-10 s of clean speech; the TTS LM only, not Piper)"
    )
    voice.add_argument("--prompt-text", help="the exact transcript of --prompt-wav")
    parser.add_argument(
        "--tags",
        nargs="+",
        default=[],
        metavar="TAG",
        help="style tags, e.g. --tags 英文 快速1 (added to the text's own inline tags; an unknown tag is an error)",
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="speaking rate, 0.5-2 (1.25: a quarter faster), made by the decoder"
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="speak sentence by sentence, each streamed through the decoder as the LM speaks it (as the real-time "
        "pipeline does), and write the file in place chunk by chunk (it can be played while growing; a failure "
        "leaves the part made so far, where without --stream the file appears only when complete)",
    )
    parser.add_argument("--model", default="mini", help="'mini' or a directory of official checkpoints")
    add_tts_arg(parser)
    add_lm_engine_args(parser, "the official TTS LM (Step-Audio-TTS-3B)")
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="where the LM and the decoder run: auto (default) takes the GPU when torch sees one; the official "
        "LM runs in bfloat16 there, in float32 on the CPU",
    )
    parser.add_argument("--seed", type=int, help="sampling seed, for a repeatable result")
    parser.set_defaults(run=cmd_tts)
