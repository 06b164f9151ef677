"""Prompt formats, in one place: how conversations and tasks become the exact text or ids a
model was trained on.

- `STEP1_CHAT`: the official Step-Audio-Chat template (`<|BOT|>role\\ncontent<|EOT|>`, user is
  called "human", no system turn unless one is given), as the release's `StepAudio.apply_chat_template`.
- `asr_messages`: the official speech-recognition prompt for Step-Audio-Chat.
- `tts_prompt_ids`: the official Step-Audio-TTS-3B prompt, built as ids like the release does
  (system turn with the instruction-tag guide and voice, one example turn pair with the voice
  prompt's transcript and audio tokens, then the text to speak) and the official tag set.
- `CHATML`: the chat template of SmolLM2 (the `mini` chat model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stepaudio.lm.tokenizer import AUDIO_VOCAB, BOT, EOT, Tokenizer

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class ChatFormat:
    """A turn-based template: `begin + role + "\\n" + content + end` per message."""

    name: str
    begin: str
    end: str  # closes a turn; also what the model emits to stop
    default_system: str  # put first when a conversation has no system turn; "" for none
    role_names: tuple[tuple[str, str], ...] = ()  # (our role, the template's name for it)

    def _role(self, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
        return dict(self.role_names).get(role, role)

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """The prompt text; the default system turn (if the format has one) goes first when the
        conversation has none."""
        if self.default_system and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.default_system}, *messages]
        text = "".join(f"{self.begin}{self._role(m['role'])}\n{m['content']}{self.end}" for m in messages)
        return text + (f"{self.begin}{self._role('assistant')}\n" if add_generation_prompt else "")

    def parse(self, text: str) -> list[Message]:
        """The messages of a rendered conversation (the inverse of `render`)."""
        names = {name: role for role, name in ((r, self._role(r)) for r in ROLES)}
        turn = re.compile(re.escape(self.begin) + r"(\w+)\n(.*?)" + re.escape(self.end), re.DOTALL)
        messages, position = [], 0
        for match in turn.finditer(text):
            if match.start() != position or match.group(1) not in names:
                raise ValueError(f"not a {self.name} conversation at character {position}: {text[position:][:40]!r}")
            messages.append({"role": names[match.group(1)], "content": match.group(2)})
            position = match.end()
        if text[position:] not in ("", f"{self.begin}{self._role('assistant')}\n"):
            raise ValueError(f"not a {self.name} conversation at character {position}: {text[position:][:40]!r}")
        return messages

    def encode(self, tokenizer: Tokenizer, messages: list[Message], add_generation_prompt: bool = True) -> list[int]:
        return tokenizer.encode(self.render(messages, add_generation_prompt))  # BOS as the model expects

    def stop_ids(self, tokenizer: Tokenizer) -> tuple[int, ...]:
        return tuple(sorted({tokenizer.token_id(self.end.strip()), tokenizer.eos_id}))


# The release adds no system turn of its own (Step-Audio stepaudio.py:53-74 at a52b94d8).
STEP1_CHAT = ChatFormat("step1", BOT, EOT, "", (("user", "human"),))
CHATML = ChatFormat(
    "chatml", "<|im_start|>", "<|im_end|>\n", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
)

# --- Step-Audio-Chat: speech recognition ----------------------------------------------------------

ASR_SYSTEM_PROMPT = "请记录下你所听到的语音内容。"  # "please write down the speech content you hear"


def audio_text(audio: list[int]) -> str:
    """Audio indices K (0..5119) as the `<audio_K>` string the chat template carries."""
    _check_audio(audio)
    return "".join(f"<audio_{k}>" for k in audio)


def asr_messages(audio: list[int]) -> list[Message]:
    return [{"role": "system", "content": ASR_SYSTEM_PROMPT}, {"role": "user", "content": audio_text(audio)}]


def _check_audio(audio: list[int]) -> None:
    bad = [k for k in audio if not 0 <= k < AUDIO_VOCAB]
    if bad:
        raise ValueError(f"audio indices must be in 0..{AUDIO_VOCAB - 1}; got {bad[:5]}")


# --- Step-Audio-TTS-3B ----------------------------------------------------------------------------

EMOTION_TAGS = ("高兴1", "高兴2", "生气1", "生气2", "悲伤1", "撒娇1")  # happy, angry, sad, coquettish
LANGUAGE_TAGS = ("中文", "英文", "韩语", "日语", "四川话", "粤语", "广东话")  # zh, en, ko, ja, Sichuanese, Cantonese
MUSIC_TAGS = ("RAP", "哼唱")  # rap, humming
SPEED_TAGS = ("慢速1", "慢速2", "快速1", "快速2")  # slower, faster
TAGS = EMOTION_TAGS + LANGUAGE_TAGS + MUSIC_TAGS + SPEED_TAGS

_TAG_GUIDE = (
    ("情感标签涵盖了多种情绪状态", EMOTION_TAGS),
    ("语种或方言标签包含多种语言或方言", LANGUAGE_TAGS),
    ("音乐哼唱标签包含多种类型歌曲哼唱", MUSIC_TAGS),
    ("语音调整标签", SPEED_TAGS),
)


def _voice_actor_prompt(speaker: str | None) -> str:
    """The official system prompt: read the text as a voice actor following the tags (listed)."""
    guide = "".join(
        f"\n# {title}，包括但不限于：\n" + "".join(f'- "{tag}"\n' for tag in tags) for title, tags in _TAG_GUIDE
    )
    voice = f"使用[{speaker}]的声音，" if speaker else ""
    return (
        "作为一名卓越的声优演员，你的任务是根据文本中（）或()括号内标注的情感、语种或方言、音乐哼唱、语音调整等标签，"
        f"以丰富细腻的情感和自然顺畅的语调来朗读文本。{guide}\n请在朗读时，{voice}根据这些情感标签的指示，"
        "调整你的情感、语气、语调和哼唱节奏，以确保文本的情感和意义得到准确而生动的传达，"
        "如果没有()或（）括号，则根据文本语义内容自由演绎。"
    )


RAP_SYSTEM_PROMPT = "请参考对话历史里的音色，用RAP方式将文本内容大声说唱出来。"
HUMMING_SYSTEM_PROMPT = "请参考对话历史里的音色，用哼唱的方式将文本内容大声唱出来。"


def leading_tag(text: str) -> str:
    """The first instruction tag when the text starts with one, e.g. "(RAP)..." -> "RAP", else ""."""
    match = re.match(r"^[（(]([^()（）]*)[）)]", text)
    return match.group(1) if match else ""


def tts_system_prompt(text: str, speaker: str | None = None) -> str:
    """RAP and humming have their own prompts; otherwise the voice-actor guide (naming the speaker
    of a registered voice; a cloned voice goes without a name)."""
    if leading_tag(text) in MUSIC_TAGS:
        return HUMMING_SYSTEM_PROMPT if "哼唱" in text else RAP_SYSTEM_PROMPT
    return _voice_actor_prompt(speaker)


def tts_prompt_ids(
    tokenizer: Tokenizer, text: str, prompt_text: str, prompt_audio: list[int], speaker: str | None = None
) -> list[int]:
    """The official TTS prompt as ids: the voice prompt is a previous turn (its transcript from the
    human, its audio tokens from the assistant), then the text to speak, then `<|BOT|>assistant\\n`.

    Like the release, every role string is encoded with the tokenizer's BOS, and transcripts are
    encoded after a "\\n" whose tokens are then removed (so they start mid-line, without a word-start
    marker). prompt_audio: audio indices K (0..5119)."""
    _check_audio(prompt_audio)
    bot, eot = tokenizer.token_id(BOT), tokenizer.token_id(EOT)
    newline = len(tokenizer.encode("\n", bos=True))

    def role(name: str) -> list[int]:
        return [bot, *tokenizer.encode(f"{name}\n", bos=True)]

    def continuation(content: str) -> list[int]:
        return tokenizer.encode("\n" + content, bos=True)[newline:]

    system = [bot, *tokenizer.encode("system\n" + tts_system_prompt(text, speaker), bos=True), eot]
    example = [*role("human"), *continuation(prompt_text), eot]
    example += [*role("assistant"), *(tokenizer.audio_offset + k for k in prompt_audio), eot]
    return [tokenizer.bos_id, *system, *example, *role("human"), *continuation(text), eot, *role("assistant")]
