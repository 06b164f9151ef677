"""`stepaudio chat --text`: an interactive text conversation in the terminal, with history.

Lines typed are user turns; the answer streams as it is generated. Ctrl-C stops an answer,
/reset forgets the conversation, /exit (or Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import sys

from stepaudio.commands.generate import add_model_args, add_sampling_args, load_for_cli, sampling_from_args
from stepaudio.errors import OptionError, StepAudioError

HELP = "commands: /reset (forget the conversation), /exit (or Ctrl-D); Ctrl-C stops an answer"


def run_text_chat(args: argparse.Namespace) -> None:

    import torch

    from stepaudio.lm.conversation import Conversation

    read, write = input, sys.stdout.write
    lm, draft = load_for_cli(args)
    conversation = Conversation(lm, sampling_from_args(args), args.system, draft)
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


def cmd_chat(args: argparse.Namespace) -> None:
    if not args.text:
        raise StepAudioError("only text chat exists so far: run `stepaudio chat --text`")
    run_text_chat(args)


def register(commands: argparse._SubParsersAction) -> None:
    chat = commands.add_parser(
        "chat",
        help="talk with a chat model in the terminal",
        description="An interactive conversation with history. " + HELP + ".",
    )
    chat.add_argument("--text", action="store_true", help="type and read text (no audio)")
    add_model_args(chat)
    add_sampling_args(chat, temperature=0.7, top_p=0.9)
    chat.set_defaults(run=cmd_chat)
