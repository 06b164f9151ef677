"""A `vllm serve` started by the user, perhaps on another node (Step-Audio-Chat on 4 or 8 GPUs):
its OpenAI-compatible completions API with token-id prompts, streamed, token ids back
(`return_token_ids`). Stopping reading closes the connection, and vLLM aborts the request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx

from stepaudio.errors import EngineError
from stepaudio.lm.backends.vllm_params import RequestDecoder
from stepaudio.lm.model import LMConfig

CONNECT_SECONDS = 5.0
READ_SECONDS = 300.0  # the longest wait for the next token (a long prompt on a busy server)


class RemoteBackend:
    def __init__(self, url: str, config: LMConfig):
        self.name, self.config = url, config
        self.base = url.rstrip("/").removesuffix("/v1")
        self._client = httpx.Client(timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS))
        try:
            models = self._client.get(f"{self.base}/v1/models", timeout=CONNECT_SECONDS)
            models.raise_for_status()
            served = models.json()["data"][0]
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as error:
            self._client.close()
            raise EngineError(
                f"no vLLM server answers at {url} ({error}): start one with `vllm serve MODEL_DIR` "
                "(README, 'Large models: vLLM') or check the address"
            ) from error
        self.model_id = served["id"]
        self.max_len = int(served.get("max_model_len") or config.max_seq_len)

    def decoder(self, max_len: int | None = None) -> RequestDecoder:
        return RequestDecoder(self._submit, min(max_len or self.max_len, self.max_len))

    def _submit(self, prompt: list[int], fields: dict, rule: dict, cancel: threading.Event | None) -> Iterator[int]:
        body = {"model": self.model_id, "prompt": prompt, "stream": True, "return_token_ids": True, **fields}
        if rule:
            body["vllm_xargs"] = rule
        try:
            with self._client.stream("POST", f"{self.base}/v1/completions", json=body) as response:
                if response.status_code != 200:
                    raise EngineError(f"{self.name} refused the request ({response.status_code}): {response.read()!r}")
                for line in response.iter_lines():
                    if cancel is not None and cancel.is_set():
                        return
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: ") :])
                    if "error" in chunk:
                        raise EngineError(f"{self.name} failed on a request: {chunk['error']}")
                    for choice in chunk.get("choices", ()):
                        yield from choice.get("token_ids") or ()
        except httpx.HTTPError as error:
            raise EngineError(f"lost the vLLM server at {self.name}: {error}") from error

    def close(self) -> None:
        self._client.close()
