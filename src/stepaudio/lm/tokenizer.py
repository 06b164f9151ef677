"""Text tokenizers of the language models, behind one small interface.

- `SentencePieceTokenizer`: Step1's `tokenizer.model`. The turn markers `<|BOT|>` / `<|EOT|>` and
  the audio tokens `<audio_K>` (id 65536 + K; `audio_offset` + K in a compact vocabulary) are never
  split, wherever they appear in the text.
- `BPETokenizer`: byte-level BPE (SmolLM2 and other Llama-family models), built with the `tokenizers`
  library from a `tokenizer.json` or from the vocabulary and merges stored in a GGUF file.
"""

from __future__ import annotations

import re
from pathlib import Path

from stepaudio.errors import CheckpointError
from stepaudio.tokenizer.interleave import AUDIO_VOCAB, LLM_AUDIO_OFFSET

BOT, EOT = "<|BOT|>", "<|EOT|>"


class Tokenizer:
    """What the engine needs from a tokenizer: text <-> ids and a few special ids."""

    bos_id: int | None
    eos_id: int
    vocab_size: int
    audio_offset: int = LLM_AUDIO_OFFSET  # id of `<audio_0>`; a compact vocabulary puts it after the text pieces

    def encode(self, text: str, bos: bool = False) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        raise NotImplementedError

    def token_id(self, piece: str) -> int:
        raise NotImplementedError


class SentencePieceTokenizer(Tokenizer):
    _SPECIAL = re.compile(r"(<\|BOT\|>|<\|EOT\|>|<audio_\d+>)")

    def __init__(self, path: str | Path, audio_offset: int = LLM_AUDIO_OFFSET):
        import sentencepiece

        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
        except (OSError, RuntimeError) as error:
            raise CheckpointError(f"{path} is not a SentencePiece model: {error}") from error
        self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
        self.eos_id = self.token_id(EOT) if self.sp.piece_to_id(EOT) != self.sp.unk_id() else self.sp.eos_id()
        self.vocab_size = self.sp.get_piece_size()
        self.audio_offset = audio_offset
        # The released tokenizer.model holds the audio pieces itself (74,752 pieces, <audio_K> at 65536 + K);
        # a tokenizer without them must end before the audio ids.
        own_audio = self.sp.piece_to_id("<audio_0>")
        if own_audio != self.sp.unk_id() and own_audio != audio_offset:
            raise CheckpointError(f"{path}: its <audio_0> is id {own_audio}, where audio ids start at {audio_offset}")
        if own_audio == self.sp.unk_id() and audio_offset < self.vocab_size:
            raise CheckpointError(f"audio ids from {audio_offset} would overlap the {self.vocab_size} text pieces")
        self._markers = {self.token_id(m): m for m in (BOT, EOT) if self.sp.piece_to_id(m) != self.sp.unk_id()}

    def token_id(self, piece: str) -> int:
        audio = re.fullmatch(r"<audio_(\d+)>", piece)
        if audio:
            index = int(audio.group(1))
            if index >= AUDIO_VOCAB:
                raise ValueError(f"{piece}: audio tokens go up to <audio_{AUDIO_VOCAB - 1}>")
            return self.audio_offset + index
        index = self.sp.piece_to_id(piece)
        if index == self.sp.unk_id() and piece != self.sp.id_to_piece(index):
            raise CheckpointError(f"the tokenizer has no token {piece!r}")
        return index

    def encode(self, text: str, bos: bool = True) -> list[int]:
        """Like the official LlamaTokenizer: BOS first (by default), markers and audio tokens whole."""
        ids = [self.bos_id] if bos and self.bos_id is not None else []
        for part in self._SPECIAL.split(text):
            if self._SPECIAL.fullmatch(part):
                ids.append(self.token_id(part))
            elif part:
                ids.extend(self.sp.encode(part))
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text with markers and audio tokens spelled out; BOS/EOS/padding dropped, and the ids that are
        neither text pieces nor audio tokens (a model's vocabulary padded past its tokenizer's)."""
        pieces, run = [], []
        for index in ids:
            if self.audio_offset <= index < self.audio_offset + AUDIO_VOCAB or index in self._markers:
                pieces.append(self.sp.decode(run))
                run = []
                pieces.append(self._markers.get(index) or f"<audio_{index - self.audio_offset}>")
            elif 0 <= index < self.vocab_size and not self.sp.is_control(index):
                run.append(index)
        pieces.append(self.sp.decode(run))
        return "".join(pieces)


class BPETokenizer(Tokenizer):
    def __init__(self, backend, bos_id: int | None, eos_id: int, add_bos: bool = False):
        self.backend = backend  # tokenizers.Tokenizer
        self.bos_id, self.eos_id, self.add_bos = bos_id, eos_id, add_bos
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_file(cls, path: str | Path, bos_token: str | None = None, eos_token: str | None = None) -> BPETokenizer:
        from tokenizers import Tokenizer as Backend

        backend = Backend.from_file(str(path))
        bos = backend.token_to_id(bos_token) if bos_token else None
        eos = backend.token_to_id(eos_token) if eos_token else None
        if eos is None:
            raise CheckpointError(f"{path}: end-of-sequence token {eos_token!r} not in the vocabulary")
        return cls(backend, bos, eos)

    @classmethod
    def from_vocab(
        cls,
        tokens: list[str],
        merges: list[str],
        special: list[str],
        bos_id: int | None,
        eos_id: int,
        add_bos: bool = False,
    ) -> BPETokenizer:
        """Byte-level BPE as GPT-2 defines it (the `gpt2` tokenizer model of GGUF files)."""
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as Backend

        vocab = {token: index for index, token in enumerate(tokens)}
        pairs = [tuple(merge.split(" ", 1)) for merge in merges]
        backend = Backend(models.BPE(vocab, pairs, fuse_unk=False, byte_fallback=False))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        backend.decoder = decoders.ByteLevel()
        backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
        return cls(backend, bos_id, eos_id, add_bos)

    def token_id(self, piece: str) -> int:
        index = self.backend.token_to_id(piece)
        if index is None:
            raise CheckpointError(f"the tokenizer has no token {piece!r}")
        return index

    def encode(self, text: str, bos: bool | None = None) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if (self.add_bos if bos is None else bos) and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)
