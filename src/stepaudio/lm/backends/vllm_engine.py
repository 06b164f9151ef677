"""vLLM in this process (`AsyncLLM`): tensor and pipeline parallel over GPUs, vLLM's quantisation
methods, continuous batching of every session's requests. Our tokenizers stay ours: vLLM gets token
ids (`skip_tokenizer_init`) and gives token ids back.

vLLM's engine runs on its own asyncio loop in a background thread; `stream` is a plain iterator over
a request, for the worker threads that call every LM. Cancelling (barge-in) aborts the request.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from stepaudio.errors import EngineError
from stepaudio.lm.backends.options import CPU_KV_CACHE_GIB, EngineOptions
from stepaudio.lm.backends.vllm_params import RequestDecoder

if TYPE_CHECKING:
    from stepaudio.lm.loaders import Checkpoint

POLL_SECONDS = 0.02  # how often a waiting stream looks at its cancel event
_DONE = object()


class VLLMBackend:
    name = "vllm"

    def __init__(self, checkpoint: Checkpoint, options: EngineOptions, cpu: bool):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from stepaudio.lm.export import vllm_directory

        self.config = checkpoint.config
        step1 = self.config.position == "sqrt_alibi"
        directory = vllm_directory(checkpoint)
        args = AsyncEngineArgs(
            model=str(directory),
            skip_tokenizer_init=True,
            tensor_parallel_size=options.tensor_parallel,
            pipeline_parallel_size=options.pipeline_parallel,
            gpu_memory_utilization=options.gpu_memory,
            kv_cache_memory_bytes=int(CPU_KV_CACHE_GIB * 2**30) if cpu else None,
            max_model_len=options.max_model_len or min(self.config.max_seq_len, 8192),
            quantization=options.quantization,
            # On a CPU as on our engine: float32 (bfloat16 changes mini's answers), and no torch.compile (minutes
            # of warm-up on a small CPU at every start)
            dtype="float32" if cpu and options.dtype == "auto" else options.dtype,
            enforce_eager=cpu,
            # Step1's config.json names its own configuration class (auto_map): transformers has none. Its
            # square-root ALiBi runs only in vLLM's Triton attention, which vLLM does not pick by itself
            trust_remote_code=step1,
            attention_backend="TRITON_ATTN" if step1 else None,
            logits_processors=["stepaudio.lm.backends.vllm_rules:RepetitionWindow"],
            disable_log_stats=True,
        )
        try:
            vllm_config = args.create_engine_config()  # checks the model, parallelism and quantisation first
        except Exception as error:  # vLLM raises ValueError, pydantic errors, OSError... for what it cannot run
            raise EngineError(f"vLLM cannot run {checkpoint.path}: {error}") from error
        self.max_len = vllm_config.model_config.max_model_len
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()

        async def start() -> AsyncLLM:
            return AsyncLLM.from_vllm_config(vllm_config, disable_log_stats=True)

        try:
            self.engine = asyncio.run_coroutine_threadsafe(start(), self._loop).result()
        except Exception as error:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise EngineError(f"vLLM did not start for {checkpoint.path}: {error}") from error

    def decoder(self, max_len: int | None = None) -> RequestDecoder:
        return RequestDecoder(self._submit, min(max_len or self.max_len, self.max_len))

    def _submit(self, prompt: list[int], fields: dict, rule: dict, cancel: threading.Event | None) -> Iterator[int]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(
            **fields, extra_args=rule or None, detokenize=False, output_kind=RequestOutputKind.DELTA
        )
        request_id, tokens = uuid.uuid4().hex, queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for output in self.engine.generate(TokensPrompt(prompt_token_ids=prompt), params, request_id):
                    tokens.put(list(output.outputs[0].token_ids))
            except Exception as error:  # the engine died or refused the request: the stream raises it
                tokens.put(error)
            finally:
                tokens.put(_DONE)

        running = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    return
                try:
                    item = tokens.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    continue
                if item is _DONE:
                    return
                if isinstance(item, Exception):
                    raise EngineError(f"vLLM failed on a request: {item}") from item
                yield from item
        finally:
            if not running.done():  # cancelled, or the caller stopped reading: free vLLM's slot
                asyncio.run_coroutine_threadsafe(self.engine.abort(request_id), self._loop)

    def close(self) -> None:
        """The loop stops first: vLLM's output task, left running, would log the engine's end as a failure."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        engine, self.engine = self.engine, None
        engine.shutdown()
