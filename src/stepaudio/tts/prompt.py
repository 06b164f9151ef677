"""The TTS request as the LM sees it: style tags in front of the text, then the official prompt.

The release writes tags as a leading "(tag)" run, e.g. "(高兴1)(粤语)(快速1)text", and builds the ids
with a voice prompt as the previous turn (stepaudio.lm.prompts.tts_prompt_ids); training and
inference both go through `request_ids`, so the mini model sees exactly what it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence

from stepaudio.decoder.speech_decoder import MAX_SPEED, MIN_SPEED
from stepaudio.errors import OptionError
from stepaudio.lm.prompts import EMOTION_TAGS, LANGUAGE_TAGS, MUSIC_TAGS, SPEED_TAGS, TAGS, tts_prompt_ids
from stepaudio.lm.tokenizer import Tokenizer

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


def tagged_text(text: str, tags: Sequence[str]) -> str:
    """ "(tag1)(tag2)text", the way the release passes tags to the LM."""
    return "".join(f"({tag})" for tag in check_tags(tags)) + text


def request_ids(
    tokenizer: Tokenizer,
    text: str,
    tags: Sequence[str],
    prompt_text: str,
    prompt_tokens: Sequence[int],
    speaker: str | None = None,
) -> list[int]:
    """The official prompt ids for speaking `text` (normalised) with `tags`, in the voice whose
    prompt transcript and audio indices (0..5119) are given; ends with `<|BOT|>assistant\\n`."""
    return tts_prompt_ids(tokenizer, tagged_text(text, tags), prompt_text, list(prompt_tokens), speaker)
