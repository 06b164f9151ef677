"""The TTS request as the LM sees it: style tags in front of the text, then the official prompt.

The release writes tags as a leading "(tag)" run, e.g. "(高兴1)(粤语)(快速1)text" or "（RAP）text", and builds
the ids with a voice prompt as the previous turn (stepaudio.lm.prompts.tts_prompt_ids); training and
inference both go through `request_ids`, so the mini model sees exactly what it was trained on.
Text that arrives with its tags inline (a user's, a chat answer, an HTTP request) is split by
`split_tags` first, so a tag is read as an instruction and never spoken.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stepaudio.errors import OptionError
from stepaudio.lm.prompts import EMOTION_TAGS, LANGUAGE_TAGS, MUSIC_TAGS, SPEED_TAGS, TAGS, tts_prompt_ids
from stepaudio.lm.tokenizer import Tokenizer
from stepaudio.speed import MAX_SPEED, MIN_SPEED

LANGUAGE_TAG = {"en": "英文", "zh": "中文", "yue": "粤语"}  # corpus language -> the official tag
CANTONESE_TAGS = ("粤语", "广东话")


# Speaking rates that render the speed tags where the model does not follow them itself: the mini LM
# (SpeechLM.follows_speed_tags) and Piper voices.
SPEED_TAG_RATES = {"慢速2": 0.6, "慢速1": 0.75, "快速1": 1.3, "快速2": 1.6}

_ORDER = (MUSIC_TAGS, EMOTION_TAGS, LANGUAGE_TAGS, SPEED_TAGS)  # music first: only the leading tag picks a mode


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags without parentheses or repeats, music first, then emotion, language and speed;
    OptionError names an unknown one."""
    if len(tags) > len(TAGS):
        raise OptionError(f"{len(tags)} style tags given; there are {len(TAGS)} in all: give each at most once")
    cleaned = [tag.strip().strip("()（）").strip() for tag in tags]
    unknown = [tag for tag in cleaned if tag not in TAGS]
    if unknown:
        raise OptionError(f"unknown style tag {unknown[0]!r}; the tags are: {' '.join(TAGS)}")
    return tuple(sorted(dict.fromkeys(cleaned), key=lambda tag: next(i for i, g in enumerate(_ORDER) if tag in g)))


def tagged_rate(speed: float, tags: Sequence[str]) -> float:
    """`speed` times the rates of the speed tags, kept in the speakers' range."""
    for tag in tags:
        speed *= SPEED_TAG_RATES.get(tag, 1.0)
    return min(max(speed, MIN_SPEED), MAX_SPEED)


# One leading tag as the release writes it: full- or half-width parentheses around the exact tag name.
_INLINE_TAG = re.compile(r"\s*[（(]([^()（）]*)[）)]")


def split_tags(text: str, tags: Sequence[str] = ()) -> tuple[tuple[str, ...], str]:
    """(the request's style tags, the text to speak): the run of tags at the start of `text`, e.g.
    "(高兴1)Hello" or "（RAP）我踏上...", taken out of the text and merged with `tags` (checked as
    `check_tags` does: an unknown one is an OptionError). The run ends at the first parenthesis that
    does not hold a tag, which stays in the text as words to speak.

    Only the first tag picks the mode (RAP, humming), as in the release: a music tag from `tags`
    comes first, then the text's own tags in their written order (so text with its tags inline is
    read exactly as the release reads it), then the rest of `tags`."""
    given, inline, position = check_tags(tags), [], 0
    while (match := _INLINE_TAG.match(text, position)) and match.group(1) in TAGS:
        inline.append(match.group(1))
        position = match.end()
    ordered = [t for t in given if t in MUSIC_TAGS] + inline + [t for t in given if t not in MUSIC_TAGS]
    return tuple(dict.fromkeys(ordered)), text[position:]


def tagged_text(text: str, tags: Sequence[str], wide: bool = False) -> str:
    """ "(tag1)(tag2)text", the way the release passes tags to the LM, in the order given (the first
    picks the mode; `check_tags` gives the official order); wide: full-width "（tag）" as the user wrote."""
    unknown = [tag for tag in tags if tag not in TAGS]
    if unknown:
        raise OptionError(f"unknown style tag {unknown[0]!r}; the tags are: {' '.join(TAGS)}")
    left, right = "（）" if wide else "()"
    return "".join(f"{left}{tag}{right}" for tag in dict.fromkeys(tags)) + text


def request_ids(
    tokenizer: Tokenizer,
    text: str,
    tags: Sequence[str],
    prompt_text: str,
    prompt_tokens: Sequence[int],
    speaker: str | None = None,
    wide: bool = False,
) -> list[int]:
    """The official prompt ids for speaking `text` (normalised) with `tags` (in this order), in the
    voice whose prompt transcript and audio indices (0..5119) are given; ends with
    `<|BOT|>assistant\\n`. wide: the tags in full-width parentheses."""
    return tts_prompt_ids(tokenizer, tagged_text(text, tags, wide), prompt_text, list(prompt_tokens), speaker)
