"""The official repetition-aware rule (`stepaudio.lm.sampling.ban_repeats`) as a vLLM logits processor:
vLLM has none built in. A request turns it on with the extra arguments `repetition_window` and
`repetition_limit` (SamplingParams.extra_args in this process, `vllm_xargs` on the completions API).

A remote server loads it at start:

    vllm serve DIR --logits-processors stepaudio.lm.backends.vllm_rules:RepetitionWindow

Imported by vLLM only: this module needs vLLM installed.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

# per request: (window, limit, prompt ids, output ids; vLLM appends to the output list as it decodes)
_Row = tuple[int, int, list[int], list[int]]


class RepetitionWindow(LogitsProcessor):
    """When the last token appears `repetition_limit` times or more among the last `repetition_window`
    tokens (prompt included, as in the release), it may not come next."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        self.rows: dict[int, _Row] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # it bans the argmax sometimes

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.rows, batch_update, _row)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for index, (window, limit, prompt, output) in self.rows.items():
            if len(prompt) + len(output) < window:
                continue
            recent = output[-window:]
            if len(recent) < window:
                recent = prompt[len(recent) - window :] + recent
            if recent.count(recent[-1]) >= limit:
                logits[index, recent[-1]] = float("-inf")
        return logits


def _row(params, prompt: list[int] | None, output: list[int]) -> _Row | None:
    args = params.extra_args or {}
    window = int(args.get("repetition_window", 0))
    return (window, int(args.get("repetition_limit", 2)), prompt or [], output) if window > 0 else None
