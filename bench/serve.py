"""The server under load, over loopback: how many real-time sessions it holds with the time from the
end of the user's speech to the first answer audio at p90 under 1.5 s, and requests/s of the TTS
and ASR routes.

    python bench/serve.py [--sessions 1,2,4,8] [--turns 3] [--http-seconds 20] [--json out.json]
    python bench/serve.py --soak 120 --soak-sessions 20      # the issue's 20 sessions for 2 minutes
    python bench/serve.py --url http://127.0.0.1:8000          # a server already running

Without --url it starts `stepaudio serve` (arguments from --serve-args) in a subprocess, so the
clients here do not share the server's interpreter. Each scripted session speaks a LibriVox
question in real time (100-ms appends), then real-time silence until the answer is done; the
latency is from the last speech sample sent to the first `response.output_audio.delta`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import LIBRIVOX  # noqa: E402
from stepaudio.audio import load_audio  # noqa: E402

RATE = 24_000
CHUNK = RATE // 10  # 100 ms per append, as a browser sends
TARGET_P90_S = 1.5


def pcm16(samples: np.ndarray) -> str:
    return base64.b64encode(np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes()).decode()


class Server:
    """`stepaudio serve` in a subprocess on a free loopback port."""

    def __init__(self, serve_args: list[str], max_sessions: int):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [sys.executable, "-m", "stepaudio.cli", "serve", "--port", str(self.port)]
        command += ["--max-sessions", str(max_sessions), "--log-level", "warning", *serve_args]
        self.process = subprocess.Popen(command)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
        raise SystemExit("the server did not start in time")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def session(url: str, question: np.ndarray, turns: int, deadline: float | None = None) -> dict:
    """One scripted conversation; returns its latencies and how many turns got no answer."""
    from websockets.asyncio.client import connect

    latencies, after_stop, lost = [], [], 0
    async with connect(url.replace("http", "ws", 1) + "/v1/realtime", max_size=None) as ws:
        events: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            async for message in ws:
                await events.put((time.monotonic(), json.loads(message)))

        reader = asyncio.create_task(read())
        silence = np.zeros(CHUNK, np.float32)
        turn = 0
        while turn < turns or (deadline is not None and time.monotonic() < deadline):
            if deadline is not None and time.monotonic() >= deadline:
                break
            turn += 1
            start = time.monotonic()
            for i, offset in enumerate(range(0, len(question), CHUNK)):
                await asyncio.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
                await ws.send(
                    json.dumps({"type": "input_audio_buffer.append", "audio": pcm16(question[offset : offset + CHUNK])})
                )
            speech_end = time.monotonic()
            stopped_at = first_audio = None
            done = False
            tick = time.monotonic()
            while not done and time.monotonic() - speech_end < 30:
                tick += 0.1
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm16(silence)}))
                while not events.empty() or time.monotonic() < tick:
                    try:
                        at, event = await asyncio.wait_for(events.get(), max(0.001, tick - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                    if event["type"] == "input_audio_buffer.speech_stopped" and stopped_at is None:
                        stopped_at = at
                    elif event["type"] == "response.output_audio.delta" and first_audio is None:
                        first_audio = at
                    elif event["type"] == "response.done":
                        done = True
            if first_audio is None:
                lost += 1
            else:
                latencies.append(first_audio - speech_end)
                if stopped_at is not None:
                    after_stop.append(first_audio - stopped_at)
            while not events.empty():
                events.get_nowait()
        reader.cancel()
    return {"latencies": latencies, "after_speech_stopped": after_stop, "lost": lost, "turns": turn}


async def sessions_at_once(
    url: str, question: np.ndarray, count: int, turns: int, deadline: float | None = None
) -> dict:
    results = await asyncio.gather(
        *(session(url, question, turns, deadline) for _ in range(count)), return_exceptions=True
    )
    failed = [repr(r) for r in results if isinstance(r, BaseException)]
    good = [r for r in results if not isinstance(r, BaseException)]
    latencies = np.array([x for r in good for x in r["latencies"]])
    after_stop = np.array([x for r in good for x in r["after_speech_stopped"]])
    return {
        "sessions": count,
        "turns": sum(r["turns"] for r in good),
        "lost_turns": sum(r["lost"] for r in good),
        "failed_sessions": failed,
        "p50_s": float(np.percentile(latencies, 50)) if latencies.size else None,
        "p90_s": float(np.percentile(latencies, 90)) if latencies.size else None,
        "max_s": float(latencies.max()) if latencies.size else None,
        "p90_after_speech_stopped_s": float(np.percentile(after_stop, 90)) if after_stop.size else None,
    }


async def requests_per_second(url: str, route: str, make_request, clients: int, seconds: float) -> dict:
    import httpx

    latencies, errors = [], 0
    deadline = time.monotonic() + seconds

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            start = time.monotonic()
            response = await http.post(url + route, timeout=120, **make_request())
            if response.status_code == 200:
                latencies.append(time.monotonic() - start)
            else:
                errors += 1

    begun = time.monotonic()
    async with httpx.AsyncClient() as http:
        await asyncio.gather(*(worker(http) for _ in range(clients)))
    elapsed = time.monotonic() - begun
    return {
        "route": route,
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "requests_per_s": len(latencies) / elapsed,
        "mean_latency_s": float(np.mean(latencies)) if latencies else None,
    }


def bench_realtime(url: str, question: np.ndarray, counts: list[int], turns: int) -> dict:
    """More sessions at once until the p90 passes the target; the most that stayed under it."""
    rows = []
    print(
        f"{'sessions':>8} {'turns':>6} {'lost':>5} {'p50 s':>7} {'p90 s':>7} {'max s':>7}  end of speech -> first audio"
    )
    for count in counts:
        row = asyncio.run(sessions_at_once(url, question, count, turns))
        rows.append(row)
        p50, p90, worst = (row[k] if row[k] is not None else float("nan") for k in ("p50_s", "p90_s", "max_s"))
        failed = f"  failed: {row['failed_sessions']}" if row["failed_sessions"] else ""
        print(f"{count:>8} {row['turns']:>6} {row['lost_turns']:>5} {p50:>7.2f} {p90:>7.2f} {worst:>7.2f}{failed}")
        if not p90 < TARGET_P90_S or row["failed_sessions"]:
            break
    good = [
        r["sessions"] for r in rows if r["p90_s"] is not None and r["p90_s"] < TARGET_P90_S and not r["failed_sessions"]
    ]
    held = max(good, default=0)
    print(f"sessions held with p90 < {TARGET_P90_S} s: {held}")
    return {"rows": rows, "sessions_held": held}


def bench_http(url: str, clients: int, seconds: float) -> list[dict]:
    wav = (LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav").read_bytes()
    speech = {"json": {"input": "The capital of France is Paris.", "response_format": "wav"}}
    routes = [
        ("/v1/audio/speech", lambda: speech),
        ("/v1/audio/transcriptions", lambda: {"files": {"file": ("q.wav", wav, "audio/wav")}}),
    ]
    rows = []
    for route, make in routes:
        row = asyncio.run(requests_per_second(url, route, make, clients, seconds))
        rows.append(row)
        mean = row["mean_latency_s"] if row["mean_latency_s"] is not None else float("nan")
        print(
            f"{route}: {row['requests_per_s']:.2f} req/s, mean {mean:.2f} s, {row['errors']} errors ({clients} clients)"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="bench this running server instead of starting one")
    parser.add_argument(
        "--serve-args", default="--model mini", help="arguments of `stepaudio serve` (default: %(default)s)"
    )
    parser.add_argument(
        "--sessions", default="1,2,3,4,6,8", help="concurrent sessions to try, in order (default: %(default)s)"
    )
    parser.add_argument("--turns", type=int, default=3, help="turns per session (default: %(default)s)")
    parser.add_argument(
        "--http-seconds", type=float, default=20, help="length of each route's run; 0 skips (default: %(default)s)"
    )
    parser.add_argument("--http-clients", type=int, default=2, help="concurrent HTTP clients (default: %(default)s)")
    parser.add_argument("--soak", type=float, default=0, help="instead: hold --soak-sessions for this many seconds")
    parser.add_argument("--soak-sessions", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    question = load_audio(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav", RATE)[0]
    counts = [int(n) for n in args.sessions.split(",")]
    server = None
    if args.url is None:
        server = Server(shlex.split(args.serve_args), max(counts + [args.soak_sessions]))
        server.wait()
    url = args.url or server.url
    results: dict = {"machine_cpus": os.cpu_count(), "serve_args": args.serve_args}
    try:
        if args.soak:
            before = server.rss_mib() if server else None
            soak = asyncio.run(sessions_at_once(url, question, args.soak_sessions, 1, time.monotonic() + args.soak))
            soak["rss_mib_before"], soak["rss_mib_after"] = before, server.rss_mib() if server else None
            results["soak"] = soak
            print(f"soak: {json.dumps(soak)}")
        else:
            results["realtime"] = bench_realtime(url, question, counts, args.turns)
            if args.http_seconds:
                results["http"] = bench_http(url, args.http_clients, args.http_seconds)
    finally:
        if server:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
