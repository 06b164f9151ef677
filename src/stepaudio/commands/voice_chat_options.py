"""The options the voice-chat commands share (`chat`, `simulate`, `talk`, `serve`): which models and
voice, the turn-taking settings, and the ChatEngine and SessionConfig built from them."""

from __future__ import annotations

import argparse

from stepaudio.audio.vad import CONVERSATION_VAD, VADParams
from stepaudio.commands.lm_engine_options import (
    add_lm_engine_args,
    add_tts_engine_args,
    engine_options,
    tts_engine_options,
)

TTS_CHOICES = ("auto", "model", "piper")


def tts_help() -> str:
    from stepaudio.models.measured import INTELLIGIBLE_WER, MINI_TTS_WER

    return (
        "who speaks: auto (default): with official weights their TTS; with mini a Piper voice (`stepaudio install "
        f"piper`), because the mini TTS LM is not intelligible yet (WER {MINI_TTS_WER:.2f}, over "
        f"{INTELLIGIBLE_WER:.2f}); model: the model's own TTS (with mini EXPERIMENTAL: babble-like speech); "
        "piper: a Piper voice (English)"
    )


def add_tts_arg(parser: argparse.ArgumentParser) -> None:
    """--tts: which engine speaks (`stepaudio tts` and the voice-chat commands)."""
    parser.add_argument("--tts", choices=TTS_CHOICES, default="auto", help=tts_help())


def speaks_with_piper(tts: str, model) -> bool:
    """Whether --tts `tts` with --model `model` asks for a Piper voice: piper, or auto with mini while
    the mini TTS LM is not intelligible (`stepaudio.models.measured`)."""
    from stepaudio.models import resolve_model
    from stepaudio.models.measured import mini_tts_intelligible

    if tts != "auto":
        return tts == "piper"
    return resolve_model(model).kind == "mini" and not mini_tts_intelligible()


def no_piper_hint(missing: Exception) -> str:
    """How to get the Piper voice (or the mini TTS LM instead) when it is not installed."""
    from stepaudio.models.measured import MINI_TTS_WER

    return (
        f"no Piper voice is installed ({missing}): run `stepaudio install piper` to get it; "
        f"--tts model speaks with the experimental mini TTS LM instead (not intelligible yet: WER {MINI_TTS_WER:.2f})"
    )


def add_voice_args(parser: argparse.ArgumentParser) -> None:
    """Who speaks the answers."""
    add_tts_arg(parser)
    parser.add_argument("--voice", help="voice name (of the TTS, or of Piper)")
    parser.add_argument(
        "--tags", nargs="+", default=[], metavar="TAG", help="style tags of the answers, e.g. --tags 快速1 (see tts)"
    )
    parser.add_argument("--speed", type=float, default=1.0, help="speaking rate of the answers, 0.5-2 (default: 1)")


def add_engine_args(parser: argparse.ArgumentParser) -> None:
    """The options of the live voice-chat commands: models, voice and the turn-taking settings."""
    defaults = CONVERSATION_VAD
    parser.add_argument("--model", default="mini", help="mini, or a directory of official checkpoints (default: mini)")
    add_voice_args(parser)
    add_lm_engine_args(parser, "the chat LM")
    add_tts_engine_args(parser)
    parser.add_argument("--system", help="instructions for the assistant (system prompt)")
    parser.add_argument("--no-speculation", action="store_true", help="do not start answering at pauses")
    parser.add_argument(
        "--pause-ms",
        type=int,
        default=defaults.pause_ms,
        help="pause that starts a speculative answer (default: %(default)s)",
    )
    parser.add_argument(
        "--end-ms", type=int, default=defaults.end_ms, help="silence that ends a turn (default: %(default)s)"
    )
    parser.add_argument(
        "--barge-in-ms", type=int, default=250, help="speech over an answer that interrupts it (default: %(default)s)"
    )


def speech_style(args: argparse.Namespace) -> dict:
    """The SessionConfig fields of `add_voice_args`' options, checked (OptionError names a bad one)."""
    from stepaudio.speed import check_speed
    from stepaudio.tts.prompt import check_tags

    return {"voice": args.voice, "tags": check_tags(args.tags), "speed": check_speed(args.speed)}


def session_config(args: argparse.Namespace):
    from stepaudio.realtime.session import SessionConfig

    return SessionConfig(
        **speech_style(args),
        instructions=args.system,
        vad=VADParams(pause_ms=min(args.pause_ms, args.end_ms), end_ms=args.end_ms),
        speculative=not args.no_speculation,
        speculate_after_ms=args.pause_ms,
        barge_in_ms=args.barge_in_ms,
    )


def load_engine(args: argparse.Namespace, say=print):
    """The ChatEngine of --model with the speaker --tts asks for (`speaks_with_piper`). `auto` with mini
    and no Piper installed: the mini TTS, after a line through `say` on how to install Piper."""
    from stepaudio.realtime.engine import ChatEngine
    from stepaudio.realtime.piper_speaker import PiperSpeaker
    from stepaudio.tts_engines import EngineUnavailable

    engines = {"engine": engine_options(args), "tts_engine": tts_engine_options(args)}  # checked before loading
    if args.tts == "piper":
        return ChatEngine.load(args.model, speaker=PiperSpeaker(args.voice), **engines)
    if speaks_with_piper(args.tts, args.model):
        try:
            return ChatEngine.load(args.model, speaker=PiperSpeaker(args.voice), **engines)
        except EngineUnavailable as missing:
            say(f"({no_piper_hint(missing)}; speaking with the mini TTS LM meanwhile)")
    return ChatEngine.load(args.model, **engines)
