"""Servers started as their users start them, in a subprocess on a free loopback port."""

import contextlib
import socket
import subprocess
import time

import httpx

START_SECONDS = 300  # vLLM's start on two cores: imports, engine process, weights


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running(command: list[str], ready_url: str):
    """The command running until `ready_url` answers 200; stopped on exit."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_SECONDS
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command} exited: {process.stdout.read().decode(errors='replace')[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command} did not start in {START_SECONDS} s")
            time.sleep(1)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def running_requests(url: str) -> float:
    """vLLM's own count of requests it is decoding (its Prometheus metrics)."""
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("vllm:num_requests_running")
    )
