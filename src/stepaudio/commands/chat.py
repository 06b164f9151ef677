"""`stepaudio chat`: one spoken turn answered in speech, or an interactive text conversation.

`stepaudio chat IN.wav -o OUT.wav`: the question is listened to, answered and spoken exactly as in a
live voice conversation (`stepaudio.realtime`, with its short greedy answers); the transcript and the
answer are printed. --model is mini-chat (the mini voice path) or the folder of the official
checkpoints; the precision and sampling options are for --text.

`stepaudio chat --text`: lines typed are user turns; the answer streams as it is generated. Ctrl-C
stops an answer, /reset forgets the conversation, /exit (or Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import sys

from stepaudio.commands.generate import add_model_args, add_sampling_args, load_for_cli, sampling_from_args
from stepaudio.commands.lm_engine_options import add_tts_engine_args
from stepaudio.commands.voice_chat_options import add_voice_args
from stepaudio.errors import OptionError

HELP = "commands: /reset (forget the conversation), /exit (or Ctrl-D); Ctrl-C stops an answer"


def run_text_chat(args: argparse.Namespace) -> None:

    import torch

    from stepaudio.lm.conversation import Conversation

    read, write = input, sys.stdout.write
    lm, draft = load_for_cli(args)
    conversation = Conversation(lm, sampling_from_args(args, lm), args.system, draft)
    write(f"chatting with {args.model} ({HELP})\n")
    while True:
        try:
            line = read("you> ").strip()
        except EOFError:
            write("\n")
            return
        if not line:
            continue
        if line == "/exit":
            return
        if line == "/reset":
            conversation.reset()
            write("(conversation forgotten)\n")
            continue
        write("assistant> ")
        try:
            with torch.inference_mode():
                for piece in conversation.reply(line):
                    write(piece)
                    sys.stdout.flush()
        except KeyboardInterrupt:  # the answer so far stays in the history, as a barge-in would leave it
            write(" [stopped]")
        except OptionError as error:
            write(f"[{error}]")
        write("\n")


def run_voice_turn(args: argparse.Namespace) -> None:
    from stepaudio.audio import check_output_path, load_audio, save_audio
    from stepaudio.commands.voice_chat_options import load_engine, speech_style
    from stepaudio.lm.loaders import MINI_CHAT
    from stepaudio.outputs import note_replacing
    from stepaudio.realtime.session import SessionConfig
    from stepaudio.realtime.turn import answer_turn_sync

    samples, rate = load_audio(args.audio)
    note_replacing(check_output_path(args.output, [args.audio]))  # before the models load
    config = SessionConfig(**speech_style(args), instructions=args.system)
    write = sys.stdout.write
    args.model = "mini" if args.model == MINI_CHAT else args.model  # the voice path of the mini chat model
    engine = load_engine(args, lambda line: write(line + "\n"))
    answer = answer_turn_sync(engine, audio=samples, sample_rate=rate, config=config)
    save_audio(args.output, answer.audio, answer.sample_rate)
    write(f"you: {answer.transcript}\nassistant: {answer.text}\n")
    write(f"wrote {args.output} ({len(answer.audio) / answer.sample_rate:.1f} s)\n")


def cmd_chat(args: argparse.Namespace) -> None:
    if args.text == (args.audio is not None):
        raise OptionError("give a spoken question (stepaudio chat IN.wav -o OUT.wav) or --text, not both")
    if args.text:
        run_text_chat(args)
        return
    if not args.output:
        raise OptionError("say where the spoken answer goes: -o OUT.wav")
    run_voice_turn(args)


def register(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser(
        "chat",
        help="answer a spoken question in speech, or chat in text in the terminal",
        description=__doc__.split("\n\n", 1)[1] + "\nIn text chat: " + HELP + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("audio", nargs="?", help="a spoken question (wav, flac, ogg, mp3)")
    chat.add_argument("-o", "--output", help="where the spoken answer goes (.wav, .flac, .ogg or .mp3)")
    chat.add_argument("--text", action="store_true", help="type and read text (no audio)")
    add_model_args(chat)
    add_voice_args(chat)
    add_tts_engine_args(chat)
    add_sampling_args(chat, temperature=0.7, top_p=0.9)
    chat.set_defaults(run=cmd_chat)
