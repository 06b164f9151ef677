"""Speculative decoding: a cheap draft model proposes a few tokens, the target model checks them
all in one forward pass, and the accepted ones cost one target pass together.

Each round the draft proposes `lookahead` tokens x1..xk from its distributions q0..q(k-1); the target
runs [last committed token, x1..xk] at once and gives p0..pk. Under greedy decoding xi is kept while
it equals argmax p(i-1), so the output is exactly that of plain greedy decoding with the target, as
long as the target computes a position the same whether it runs alone or among several: true in
float32 here; bfloat16 and 4-bit kernels round multi-token passes slightly differently, so a near tie
can go the other way.
Under sampling xi is kept with probability min(1, p(i-1)(xi) / q(i-1)(xi)); at the first refusal a
token is drawn from the normalised residual max(0, p - q), after k acceptances from pk, which makes
every emitted token distributed exactly as the target's (Leviathan et al., 2023).

Both models keep their own `Session`, so caches are reused across rounds and across turns.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from stepaudio.errors import OptionError
from stepaudio.lm.generate import Session
from stepaudio.lm.model import Transformer
from stepaudio.lm.sampling import Sampling, choose, next_token_probs


@dataclass
class SpeculativeStats:
    rounds: int = 0
    proposed: int = 0
    accepted: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.proposed if self.proposed else 0.0


def verify(
    target_probs: torch.Tensor,  # [k + 1, V]: p0..pk
    draft_probs: torch.Tensor,  # [k, V]: q0..q(k-1)
    drafted: list[int],  # x1..xk
    greedy: bool,
    generator: torch.Generator | None = None,
) -> tuple[int, int]:
    """How many drafted tokens to keep, and the token that follows them."""
    for i, token in enumerate(drafted):
        p, q = target_probs[i], draft_probs[i]
        if greedy:
            if int(p.argmax()) != token:
                return i, int(p.argmax())
            continue
        keep_chance = (p[token] / q[token]).clamp(max=1.0)
        if torch.rand((), generator=generator) >= keep_chance:
            residual = (p - q).clamp(min=0)
            residual = residual if residual.sum() > 0 else p
            return i, int(choose((residual / residual.sum())[None], generator)[0])
    last = target_probs[len(drafted)]
    return len(drafted), int(last.argmax()) if greedy else int(choose(last[None], generator)[0])


class SpeculativeDecoder:
    def __init__(self, target: Transformer, draft: Transformer, lookahead: int = 4, max_len: int | None = None):
        if lookahead < 1:
            raise ValueError(f"lookahead must be at least 1, got {lookahead}")
        if draft.config.vocab_size != target.config.vocab_size:
            raise ValueError("the draft model must share the target's vocabulary")
        self.target, self.draft = Session(target, max_len=max_len), Session(draft, max_len=max_len)
        self.lookahead = lookahead
        self.stats = SpeculativeStats()
        self.generator = torch.Generator()
        self.generator.seed()

    def _probs(self, logits: torch.Tensor, sampling: Sampling, history: list[int]) -> torch.Tensor:
        """The distribution of one position, on the CPU where the acceptance test runs."""
        past = torch.tensor([history]) if sampling.reads_history else None
        return next_token_probs(logits[None].cpu(), sampling, past)[0]

    def _propose(self, committed: list[int], sampling: Sampling, count: int) -> tuple[list[int], torch.Tensor]:
        """count draft tokens and the draft distributions they were drawn from [count, V]."""
        logits = self.draft.feed([committed])[0]
        drafted, probs = [], []
        for i in range(count):
            q = self._probs(logits, sampling, committed + drafted)
            token = int(q.argmax()) if sampling.greedy else int(choose(q[None], self.generator)[0])
            drafted.append(token)
            probs.append(q)
            if i + 1 < count:
                logits = self.draft.append(torch.tensor([[token]]))[0]
        return drafted, torch.stack(probs)

    @property
    def capacity(self) -> int:
        """Tokens the target's cache can hold, less one look-ahead of draft tokens."""
        return self.target.capacity - self.lookahead - 1

    def stream(self, prompt: list[int], sampling: Sampling, cancel: threading.Event | None = None) -> Iterator[int]:
        """New tokens, as `Session.stream` gives them (stop ids end the stream and are not given)."""
        if sampling.min_new_tokens:
            raise OptionError("speculative decoding has no minimum length: leave min_new_tokens at 0")
        if sampling.seed is not None:
            self.generator.manual_seed(sampling.seed)
        committed, emitted = list(prompt), 0
        stop = set(sampling.stop_ids)
        while emitted < sampling.max_new_tokens:
            if cancel is not None and cancel.is_set():
                return
            count = min(self.lookahead, sampling.max_new_tokens - emitted)
            drafted, draft_probs = self._propose(committed, sampling, count)
            # The target runs [last committed, x1..xk]: it must not hold the last committed token yet.
            self.target.truncate(min(self.target.length, len(committed) - 1))
            logits = self.target.feed([committed + drafted], all_logits=True)[0, -(count + 1) :]
            target_probs = torch.stack(
                [self._probs(logits[i], sampling, committed + drafted[:i]) for i in range(count + 1)]
            )
            kept, following = verify(target_probs, draft_probs, drafted, sampling.greedy, self.generator)
            self.stats.rounds += 1
            self.stats.proposed += count
            self.stats.accepted += kept
            for token in [*drafted[:kept], following]:
                if token in stop or emitted >= sampling.max_new_tokens or (cancel is not None and cancel.is_set()):
                    return
                committed.append(token)
                emitted += 1
                yield token

    def generate(self, prompt: list[int], sampling: Sampling, cancel: threading.Event | None = None) -> list[int]:
        return list(self.stream(prompt, sampling, cancel))
