"""The dual-codebook token layout: the one place for its constants and conversions.

Every 120 ms of speech is one group of 2 semantic tokens (1024 codes at 16.67 Hz) followed by 3
acoustic tokens (4096 codes at 25 Hz). Both streams share one audio index space: a semantic code c
is index c, an acoustic code d is index 1024 + d, so an index K is in 0..5119. The LLM sees K as the
text `<audio_K>` and as the token id 65536 + K. A stream pair gives min(#semantic // 2,
#acoustic // 3) groups; the tokens left over after the last whole group are dropped, as the official
tokenizer does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from stepaudio.errors import TokenError

SEMANTIC_CODES = 1024
ACOUSTIC_CODES = 4096
SEMANTIC_RATE = 50 / 3  # Hz: one semantic token per 60 ms
ACOUSTIC_RATE = 25.0  # Hz: one acoustic token per 40 ms
SEMANTIC_PER_GROUP = 2
ACOUSTIC_PER_GROUP = 3
GROUP_SIZE = SEMANTIC_PER_GROUP + ACOUSTIC_PER_GROUP
GROUP_SECONDS = 0.12
AUDIO_TOKENS_PER_SECOND = GROUP_SIZE / GROUP_SECONDS  # about 41.67
ACOUSTIC_OFFSET = SEMANTIC_CODES  # acoustic code d is audio index 1024 + d
AUDIO_VOCAB = SEMANTIC_CODES + ACOUSTIC_CODES  # audio indices 0..5119
LLM_AUDIO_OFFSET = 65536  # LLM token id of audio index K is 65536 + K

_AUDIO_TOKEN = re.compile(r"<audio_(0|[1-9][0-9]{0,3})>")


def _as_codes(values, name: str, limit: int) -> np.ndarray:
    """A 1-D int64 array of values in 0..limit-1, or an TokenError naming the first bad one."""
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.ndim != 1:
        raise TokenError(f"{name} must be a 1-D sequence of integers, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TokenError(f"{name} must be integers, got dtype {array.dtype}")
    bad = np.flatnonzero((array < 0) | (array >= limit))
    if bad.size:
        raise TokenError(f"{name}[{bad[0]}] = {array[bad[0]]} is outside 0..{limit - 1}")
    return array.astype(np.int64)


def group_count(num_semantic: int, num_acoustic: int) -> int:
    """How many whole 120 ms groups two streams of these lengths make."""
    return min(num_semantic // SEMANTIC_PER_GROUP, num_acoustic // ACOUSTIC_PER_GROUP)


def interleave(semantic, acoustic) -> np.ndarray:
    """Semantic codes [S] and acoustic codes [A] -> audio indices [5 * groups]: s s a a a, s s a a a, ..."""
    semantic = _as_codes(semantic, "semantic codes", SEMANTIC_CODES)
    acoustic = _as_codes(acoustic, "acoustic codes", ACOUSTIC_CODES)
    groups = group_count(len(semantic), len(acoustic))
    sem = semantic[: groups * SEMANTIC_PER_GROUP].reshape(groups, SEMANTIC_PER_GROUP)
    ac = acoustic[: groups * ACOUSTIC_PER_GROUP].reshape(groups, ACOUSTIC_PER_GROUP) + ACOUSTIC_OFFSET
    return np.concatenate([sem, ac], axis=1).reshape(-1)


def split(indices) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of `interleave`: audio indices [5 * groups] -> (semantic [2 * groups], acoustic [3 * groups])."""
    indices = _as_codes(indices, "audio indices", AUDIO_VOCAB)
    if len(indices) % GROUP_SIZE:
        raise TokenError(
            f"{len(indices)} audio indices are not whole groups of {GROUP_SIZE} "
            f"({SEMANTIC_PER_GROUP} semantic + {ACOUSTIC_PER_GROUP} acoustic)"
        )
    groups = indices.reshape(-1, GROUP_SIZE)
    semantic, acoustic = groups[:, :SEMANTIC_PER_GROUP], groups[:, SEMANTIC_PER_GROUP:]
    misplaced = np.flatnonzero((semantic >= SEMANTIC_CODES).any(axis=1) | (acoustic < ACOUSTIC_OFFSET).any(axis=1))
    if misplaced.size:
        g = misplaced[0]
        raise TokenError(
            f"group {g} ({groups[g].tolist()}) is not 2 semantic indices (< {SEMANTIC_CODES}) "
            f"followed by 3 acoustic indices (>= {ACOUSTIC_OFFSET})"
        )
    return semantic.reshape(-1), acoustic.reshape(-1) - ACOUSTIC_OFFSET


def to_llm_ids(indices) -> np.ndarray:
    """Audio indices -> LLM token ids (65536 + K)."""
    return _as_codes(indices, "audio indices", AUDIO_VOCAB) + LLM_AUDIO_OFFSET


def from_llm_ids(ids) -> np.ndarray:
    """LLM token ids 65536..70655 -> audio indices; any other id (text, special) is an error."""
    ids = np.asarray(ids)
    if ids.size and np.issubdtype(ids.dtype, np.integer):
        outside = np.flatnonzero((ids < LLM_AUDIO_OFFSET) | (ids >= LLM_AUDIO_OFFSET + AUDIO_VOCAB))
        if outside.size:
            raise TokenError(
                f"LLM id {ids[outside[0]]} at position {outside[0]} is not an audio token "
                f"({LLM_AUDIO_OFFSET}..{LLM_AUDIO_OFFSET + AUDIO_VOCAB - 1})"
            )
        ids = ids.astype(np.int64) - LLM_AUDIO_OFFSET
    return _as_codes(ids, "LLM ids", AUDIO_VOCAB)


def format_audio_tokens(indices) -> str:
    """Audio indices -> the LLM's text form, `<audio_K>` repeated with no separators."""
    return "".join(f"<audio_{k}>" for k in _as_codes(indices, "audio indices", AUDIO_VOCAB).tolist())


def parse_audio_tokens(text: str) -> np.ndarray:
    """The text form back to audio indices; anything but `<audio_K>` tokens (K in 0..5119) is an error."""
    if not isinstance(text, str):
        raise TokenError(f"expected a string of <audio_K> tokens, got {type(text).__name__}")
    indices, position = [], 0
    while position < len(text):
        match = _AUDIO_TOKEN.match(text, position)
        if match is None:
            raise TokenError(
                f"malformed audio token at character {position}: {text[position : position + 20]!r}; "
                f"expected <audio_K> with K in 0..{AUDIO_VOCAB - 1}"
            )
        indices.append(int(match.group(1)))
        position = match.end()
    return _as_codes(np.array(indices, dtype=np.int64), "audio indices", AUDIO_VOCAB)


@dataclass(frozen=True, eq=False)
class AudioTokens:
    """What the dual tokenizer gives for one utterance: both streams and their interleaving.

    `semantic` and `acoustic` are the whole streams; `interleaved` holds only whole groups, so up to
    1 semantic and 2 acoustic tokens at the end are not in it. Arrays are int64 and read-only.
    """

    semantic: np.ndarray  # [S] codes 0..1023 at 16.67 Hz
    acoustic: np.ndarray  # [A] codes 0..4095 at 25 Hz
    interleaved: np.ndarray = field(init=False)  # [5 * min(S // 2, A // 3)] audio indices 0..5119

    def __post_init__(self):
        semantic = _as_codes(self.semantic, "semantic codes", SEMANTIC_CODES)
        acoustic = _as_codes(self.acoustic, "acoustic codes", ACOUSTIC_CODES)
        for name, array in (
            ("semantic", semantic),
            ("acoustic", acoustic),
            ("interleaved", interleave(semantic, acoustic)),
        ):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @classmethod
    def from_interleaved(cls, indices) -> AudioTokens:
        return cls(*split(indices))

    @classmethod
    def from_llm_ids(cls, ids) -> AudioTokens:
        return cls.from_interleaved(from_llm_ids(ids))

    @classmethod
    def from_text(cls, text: str) -> AudioTokens:
        return cls.from_interleaved(parse_audio_tokens(text))

    @property
    def groups(self) -> int:
        return len(self.interleaved) // GROUP_SIZE

    @property
    def seconds(self) -> float:
        """Duration the whole groups cover."""
        return self.groups * GROUP_SECONDS

    def llm_ids(self) -> np.ndarray:
        return to_llm_ids(self.interleaved)

    def text(self) -> str:
        return format_audio_tokens(self.interleaved)

    def __eq__(self, other) -> bool:
        if not isinstance(other, AudioTokens):
            return NotImplemented
        return np.array_equal(self.semantic, other.semantic) and np.array_equal(self.acoustic, other.acoustic)

    __hash__ = None  # equal by value but holds arrays
