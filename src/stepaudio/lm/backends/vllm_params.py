"""What vLLM backends share: our `Sampling` as vLLM's sampling fields, and the decoder that streams
a request's tokens. The fields are the same for `SamplingParams` (in this process) and the
completions API of `vllm serve` (remote), which takes them by the same names.

Where vLLM's behaviour differs from our engine's: greedy tokens are the same (the tests check it);
sampled tokens follow vLLM's own random stream, so a seed gives a different (equally distributed)
answer than on our engine; the official repetition-aware rule runs as the logits processor in
`vllm_rules.py`, which a remote `vllm serve` loads only when started with `--logits-processors`
(README); vLLM applies it after its own penalties, as we do.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import torch

from stepaudio.lm.backends import answer_room
from stepaudio.lm.sampling import Sampling

RULE_ARGS = ("repetition_window", "repetition_limit")  # per-request arguments of vllm_rules.RepetitionWindow

# submit(prompt, sampling fields, rule args, cancel) -> the request's new token ids, stop id included
Submit = Callable[[list[int], dict, dict, threading.Event | None], Iterator[int]]


def sampling_fields(sampling: Sampling, max_tokens: int, allowed: torch.Tensor | None) -> dict:
    """Our stop ids are the only stops (`ignore_eos`: the model's own end-of-text is not added)."""
    fields = {
        "max_tokens": max_tokens,
        "min_tokens": min(sampling.min_new_tokens, max_tokens),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "repetition_penalty": sampling.repetition_penalty,
        "seed": sampling.seed,
        "stop_token_ids": list(sampling.stop_ids),
        "ignore_eos": True,
    }
    if allowed is not None:
        fields["allowed_token_ids"] = allowed.nonzero().flatten().tolist()
    return fields


def rule_args(sampling: Sampling) -> dict:
    if not sampling.repetition_window:
        return {}
    return {"repetition_window": sampling.repetition_window, "repetition_limit": sampling.repetition_limit}


class RequestDecoder:
    """A conversation on vLLM: each `stream` is one request (vLLM's prefix cache finds the history)."""

    def __init__(self, submit: Submit, capacity: int):
        self._submit, self.capacity = submit, capacity

    def stream(
        self,
        prompt: list[int],
        sampling: Sampling,
        cancel: threading.Event | None = None,
        allowed: torch.Tensor | None = None,
    ) -> Iterator[int]:
        max_tokens = answer_room(prompt, sampling, self.capacity)
        if max_tokens <= 0:
            return
        stop = set(sampling.stop_ids)
        for token in self._submit(
            list(prompt), sampling_fields(sampling, max_tokens, allowed), rule_args(sampling), cancel
        ):
            if token in stop:
                return
            yield token
            if cancel is not None and cancel.is_set():
                return
