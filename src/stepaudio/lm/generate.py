"""Generation sessions: one static KV cache per conversation, reused from turn to turn.

A `Session` remembers which token sits in every cache slot. Given the next prompt (the whole
conversation so far) it keeps the longest prefix already cached and only runs the new tokens, so
a chat turn costs the length of the new message, not of the history. Batches are left-padded; the
padding slots are masked out of attention.

    session = Session(model)
    for token in session.stream(prompt_ids, Sampling(max_new_tokens=64), cancel=event):
        ...  # stops at a stop id, after max_new_tokens, or as soon as `event` is set
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import torch

from stepaudio.lm.model import Transformer
from stepaudio.lm.sampling import Sampling, sample
from stepaudio.lm.tokenizer import Tokenizer

PAD = -1  # slot holding no token (left padding of a shorter row, or a row that already finished)
DEFAULT_MAX_LEN = 4096


class Session:
    def __init__(self, model: Transformer, batch_size: int = 1, max_len: int | None = None):
        self.model = model
        self.cache = model.new_cache(batch_size, max_len or min(model.config.max_seq_len, DEFAULT_MAX_LEN))
        self.slots = torch.full((batch_size, self.cache.max_len), PAD, dtype=torch.long)  # token per slot
        self.generator = torch.Generator(model.device)
        self.generator.seed()

    @property
    def length(self) -> int:
        """Cache positions in use (padding included)."""
        return self.cache.length

    @property
    def capacity(self) -> int:
        """Tokens the cache can hold: prompt and answer together."""
        return self.cache.max_len

    def tokens(self, row: int = 0) -> list[int]:
        """The tokens the cache holds for one row, padding left out."""
        row_slots = self.slots[row, : self.length]
        return row_slots[row_slots != PAD].tolist()

    def truncate(self, length: int) -> None:
        """Forget every cache position from `length` on (e.g. to drop a speculative answer)."""
        self.cache.truncate(length)

    def feed(self, prompts: list[list[int]], all_logits: bool = False) -> torch.Tensor:
        """Make the cache hold exactly `prompts` (one per row, left-padded to a common length) and
        return the logits of the next token [B, V] (or of every position run, [B, T, V]). The
        longest cached prefix is kept; at least the last token is run."""
        if len(prompts) != self.cache.batch_size or not all(prompts):
            raise ValueError(f"need {self.cache.batch_size} non-empty prompts, got {[len(p) for p in prompts]}")
        width = max(map(len, prompts))
        if width > self.cache.max_len:
            raise ValueError(f"prompt of {width} tokens does not fit the session's {self.cache.max_len}")
        grid = torch.tensor([[PAD] * (width - len(p)) + list(p) for p in prompts])  # [B, L]
        cached = self.slots[:, : min(self.length, width)]
        differs = (cached != grid[:, : cached.shape[1]]).any(0).nonzero()
        keep = int(differs[0]) if len(differs) else cached.shape[1]
        keep = min(keep, width - 1)  # run at least one token, to have logits
        self.cache.truncate(keep)
        return self.append(grid[:, keep:], all_logits)

    @torch.inference_mode()
    def append(self, tokens: torch.Tensor, all_logits: bool = False) -> torch.Tensor:
        """Run tokens [B, T] (PAD allowed) after what is cached; logits as in `feed`. Without autograd's
        bookkeeping: a decoding step is many small ops, and it costs a quarter of the step's time."""
        start, steps = self.length, tokens.shape[1]
        valid = tokens != PAD
        if self.cache.has_padding or not valid.all():
            self.cache.mark_valid(start, valid)
        self.slots[:, start : start + steps] = tokens
        device = self.model.device
        return self.model(tokens.clamp(min=0).to(device), self.cache, all_logits)

    def steps(
        self,
        prompts: list[list[int]],
        sampling: Sampling,
        cancel: threading.Event | None = None,
        allowed: torch.Tensor | None = None,
    ) -> Iterator[torch.Tensor]:
        """Each new token [B] (PAD for rows already stopped). Stop tokens end a row and are not
        yielded; a token is yielded before it is run, so the cache ends at the last token run.
        allowed: a boolean mask [V] of the tokens that may be chosen (e.g. audio tokens and the stop)."""
        if sampling.seed is not None:
            self.generator.manual_seed(sampling.seed)
        logits = self.feed(prompts)
        stop = torch.tensor(sampling.stop_ids, dtype=torch.long)
        done = torch.zeros(len(prompts), dtype=torch.bool)
        for step in range(sampling.max_new_tokens):
            if cancel is not None and cancel.is_set():
                return
            history = self.slots[:, : self.length] if sampling.reads_history else None
            if allowed is not None:
                logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
            if step < sampling.min_new_tokens:
                logits = logits.index_fill(-1, stop.to(logits.device), float("-inf"))
            token = sample(logits, sampling, history, self.generator).cpu()
            done |= torch.isin(token, stop)
            token = token.masked_fill(done, PAD)
            if done.all():
                return
            yield token
            if step + 1 == sampling.max_new_tokens or (cancel is not None and cancel.is_set()):
                return
            logits = self.append(token[:, None])

    def stream(
        self,
        prompt: list[int],
        sampling: Sampling,
        cancel: threading.Event | None = None,
        allowed: torch.Tensor | None = None,
    ) -> Iterator[int]:
        """New tokens of a single conversation, one at a time, as soon as each is chosen."""
        if self.cache.batch_size != 1:
            raise ValueError("stream() is for single-row sessions; use generate() for a batch")
        for token in self.steps([prompt], sampling, cancel, allowed):
            yield int(token[0])

    def generate(
        self, prompts: list[list[int]], sampling: Sampling, cancel: threading.Event | None = None
    ) -> list[list[int]]:
        """New tokens of every row (stop tokens not included)."""
        rows: list[list[int]] = [[] for _ in prompts]
        for token in self.steps(prompts, sampling, cancel):
            for row, value in enumerate(token.tolist()):
                if value != PAD:
                    rows[row].append(value)
        return rows


def stream_text(tokens: Iterator[int], tokenizer: Tokenizer) -> Iterator[str]:
    """Text pieces as tokens arrive; a piece that would end inside a multi-byte character waits
    for the token that completes it."""
    ids: list[int] = []
    shown = ""
    for token in tokens:
        ids.append(token)
        text = tokenizer.decode(ids)
        if text.endswith("\ufffd") or not text.startswith(shown):
            continue
        if len(text) > len(shown):
            yield text[len(shown) :]
            shown = text
    text = tokenizer.decode(ids)
    if len(text) > len(shown) and text.startswith(shown):
        yield text[len(shown) :]
