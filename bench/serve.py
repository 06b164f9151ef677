"""The server under load, over loopback: how many real-time sessions it holds with the time from the
end of the user's speech to the first answer audio at p90 under 1.5 s, and requests/s of the TTS
and ASR routes.

    python bench/serve.py [--sessions 1,2,4,8] [--turns 3] [--http-seconds 20] [--json out.json]
    python bench/serve.py --soak 120 --soak-sessions 20      # the issue's 20 sessions for 2 minutes
    python bench/serve.py --soak 300 --soak-sessions 4       # memory: RSS at start, plateau and end
    python bench/serve.py --url http://127.0.0.1:8000          # a server already running

Without --url it starts `stepaudio serve` (arguments from --serve-args) in a subprocess, so the
clients here do not share the server's interpreter. Each scripted session speaks a LibriVox
question in real time (100-ms appends), then real-time silence until the answer is done; the
latency is from the last speech sample sent to the first `response.output_audio.delta`.

The soak also samples the server's memory every --rss-every seconds: the RSS summed over its process
tree (the server and any worker processes it started; pages they share count once per process). It
reports the RSS at start (after the models load, before the soak: the median of --soak-idle seconds of
idle samples), at the plateau (the median of the samples in the last third of the soak), and at the end
(the median of --soak-idle seconds of samples taken after the sessions closed and --soak-idle seconds of
idle). The soak passes (exit status 0) when no turn was lost, no session failed and the end is at most
10 % above the plateau: the memory a soak took is given back, or at least not added to, once its
sessions are gone (ending below the plateau, as the sessions' own memory is freed, passes). With --url
it samples --pid (no RSS without it). docs/serve-soak.md has the runs and what the memory is.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import LIBRIVOX  # noqa: E402
from stepaudio.audio import load_audio  # noqa: E402

RATE = 24_000
CHUNK = RATE // 10  # 100 ms per append, as a browser sends
TARGET_P90_S = 1.5
FIRST_AUDIO_WAIT = 30  # s from the end of the question: no answer audio by then is a lost turn
ANSWER_WAIT = 90  # s from the end of the question: an answer still playing then is cancelled
END_WITHIN = 0.10  # the soak's end RSS may be this fraction above its plateau, at most


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

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def tree_rss_mib(pid: int) -> float:
    """RSS of the process `pid` and all its descendants, MiB (nan once it is gone)."""
    parts = tree_rss_parts(pid)
    return sum(parts.values()) if parts else float("nan")


def tree_rss_parts(pid: int) -> dict[str, float]:
    """{"name pid": RSS MiB} of the process `pid` and each of its descendants ({} once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    parts = {}
    for process in processes:
        try:
            parts[f"{process.name()} {process.pid}"] = process.memory_info().rss / 2**20
        except psutil.Error:  # a child that ended meanwhile
            pass
    return parts


class RSSSampler:
    """Samples `tree_rss_mib(pid)` every `every` seconds in a thread: (seconds since start, MiB, phase)."""

    def __init__(self, pid: int, every: float = 1.0):
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float, str]] = []
        self.phase = "start"
        self._stop = threading.Event()
        self._begun = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic() - self._begun, tree_rss_mib(self.pid), self.phase))
            if self._stop.wait(self.every):
                return

    def of(self, phase: str) -> list[float]:
        return [mib for _, mib, p in self.samples if p == phase and mib == mib]


def rss_summary(sampler: RSSSampler) -> dict:
    """start / plateau / end (MiB) as the module doc defines them, and whether the end is near the plateau."""
    start, soak, end = sampler.of("start"), sampler.of("soak"), sampler.of("end")

    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 1) if values else None

    thirds = [soak[i * len(soak) // 3 : (i + 1) * len(soak) // 3] for i in range(3)]
    plateau, at_end = median(thirds[2]), median(end)
    ratio = at_end / plateau if plateau and at_end else None
    return {
        "rss_mib_start": median(start),
        "rss_mib_plateau": plateau,
        "rss_mib_end": at_end,
        "rss_mib_max": round(max(soak), 1) if soak else None,
        "rss_mib_soak_thirds": [median(t) for t in thirds],  # a plateau: the last two close
        "rss_end_over_plateau": round(ratio, 3) if ratio else None,
        "rss_end_within": END_WITHIN,
        "rss_ok": ratio is not None and ratio <= 1 + END_WITHIN,
        "rss_samples": [(round(t, 1), round(mib, 1), phase) for t, mib, phase in sampler.samples],
    }


def soak(url: str, question: np.ndarray, sessions: int, seconds: float, pid: int | None, idle: float, every: float):
    """--soak: `sessions` conversations for `seconds`, the server's RSS sampled before, during and after."""
    if pid is None:
        result = asyncio.run(sessions_at_once(url, question, sessions, 1, time.monotonic() + seconds))
        result["soak_seconds"] = seconds
        return result
    with RSSSampler(pid, every) as sampler:
        time.sleep(idle)
        at_start = tree_rss_parts(pid)
        sampler.phase = "soak"
        began = time.monotonic()
        result = asyncio.run(sessions_at_once(url, question, sessions, 1, began + seconds))
        result["soak_seconds"] = round(time.monotonic() - began, 1)
        sampler.phase = "idle"
        time.sleep(idle)
        sampler.phase = "end"
        time.sleep(idle)
    result.update(rss_summary(sampler))
    for phase, parts in (("start", at_start), ("end", tree_rss_parts(pid))):
        result[f"rss_mib_{phase}_by_process"] = {name: round(mib, 1) for name, mib in parts.items()}
    return result


async def session(url: str, question: np.ndarray, turns: int, deadline: float | None = None) -> dict:
    """One scripted conversation; returns its latencies and how many turns got no answer.

    A turn's answer is the first response created after its question began; the client listens to it
    to the end (its `response.done`), sending silence, before it asks again. No audio of it within
    FIRST_AUDIO_WAIT s of the end of the question is a lost turn; an answer still playing ANSWER_WAIT s
    after it is cancelled (`response.cancel`, counted in `cut_short`) so that turns stay apart."""
    from websockets.asyncio.client import connect

    latencies, after_stop, lost, why_lost, answer_seconds, cut_short = [], [], 0, [], [], 0
    async with connect(url.replace("http", "ws", 1) + "/v1/realtime", max_size=None) as ws:
        events: asyncio.Queue = asyncio.Queue()

        async def read() -> None:
            async for message in ws:
                await events.put((time.monotonic(), json.loads(message)))

        reader = asyncio.create_task(read())
        silence = json.dumps({"type": "input_audio_buffer.append", "audio": pcm16(np.zeros(CHUNK, np.float32))})
        turn = 0
        while turn < turns or (deadline is not None and time.monotonic() < deadline):
            if deadline is not None and time.monotonic() >= deadline:
                break
            turn += 1
            while not events.empty():  # what came after the last turn's answer (none expected)
                events.get_nowait()
            start = time.monotonic()
            for i, offset in enumerate(range(0, len(question), CHUNK)):
                await asyncio.sleep(max(0.0, start + i * 0.1 - time.monotonic()))
                await ws.send(
                    json.dumps({"type": "input_audio_buffer.append", "audio": pcm16(question[offset : offset + CHUNK])})
                )
            speech_end = tick = time.monotonic()
            ours = stopped_at = first_audio = status = None
            cancelled = False
            audio_bytes = 0
            seen: list[str] = []  # what a lost turn got instead of audio
            while status is None:
                waited = time.monotonic() - speech_end
                if first_audio is None and waited > FIRST_AUDIO_WAIT or waited > ANSWER_WAIT + 10:
                    break
                if ours is not None and not cancelled and waited > ANSWER_WAIT:
                    await ws.send(json.dumps({"type": "response.cancel"}))
                    cancelled, cut_short = True, cut_short + 1
                tick += 0.1
                await ws.send(silence)
                while not events.empty() or time.monotonic() < tick:
                    try:
                        at, event = await asyncio.wait_for(events.get(), max(0.001, tick - time.monotonic()))
                    except asyncio.TimeoutError:
                        break
                    kind = event["type"]
                    if kind == "error":
                        error = event.get("error", {})
                        seen.append(f"error:{error.get('code')}: {str(error.get('message'))[:160]}")
                    elif kind == "input_audio_buffer.speech_stopped" and stopped_at is None:
                        stopped_at = at
                    elif kind == "response.created" and ours is None:
                        ours = event["response"]["id"]
                    elif kind == "response.output_audio.delta" and event.get("response_id") == ours:
                        first_audio = first_audio or at
                        audio_bytes += len(event.get("delta", "")) * 3 // 4
                    elif kind == "response.done" and event["response"]["id"] == ours:
                        status = event["response"]["status"]
            if first_audio is None:
                lost += 1
                reason = f"done:{status}" if status else "no speech_stopped" if stopped_at is None else "no audio"
                why_lost.append(",".join([*seen, reason]))
            else:
                latencies.append(first_audio - speech_end)
                answer_seconds.append(audio_bytes / 2 / RATE)
                if stopped_at is not None:
                    after_stop.append(first_audio - stopped_at)
            if ours is not None and status is None:  # gave up on it: stop it before the next question
                await ws.send(json.dumps({"type": "response.cancel"}))
                await asyncio.sleep(1)
        reader.cancel()
    return {
        "latencies": latencies,
        "after_speech_stopped": after_stop,
        "lost": lost,
        "turns": turn,
        "why_lost": why_lost,
        "answer_seconds": answer_seconds,
        "cut_short": cut_short,
    }


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
    answers = np.array([x for r in good for x in r["answer_seconds"]])
    return {
        "sessions": count,
        "turns": sum(r["turns"] for r in good),
        "lost_turns": sum(r["lost"] for r in good),
        "why_lost": dict(Counter(w for r in good for w in r["why_lost"])),
        "answers_cut_short": sum(r["cut_short"] for r in good),
        "answer_audio_s_median": float(np.median(answers)) if answers.size else None,
        "answer_audio_s_max": float(answers.max()) if answers.size else None,
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
    parser.add_argument(
        "--soak-idle",
        type=float,
        default=10,
        help="seconds of idle sampled before the soak (start) and waited then sampled after it (end) "
        "(default: %(default)s)",
    )
    parser.add_argument("--rss-every", type=float, default=1.0, help="RSS sampling period, s (default: %(default)s)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for the soak's RSS")
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
            pid = server.process.pid if server else args.pid
            row = soak(url, question, args.soak_sessions, args.soak, pid, args.soak_idle, args.rss_every)
            results["soak"] = row
            print(f"soak: {json.dumps({k: v for k, v in row.items() if k != 'rss_samples'})}")
            row["passed"] = not row["lost_turns"] and not row["failed_sessions"] and row.get("rss_ok", True)
            if pid is not None:
                print(
                    f"soak RSS (process tree, MiB): start {row['rss_mib_start']}, plateau {row['rss_mib_plateau']} "
                    f"(median of the last third), end {row['rss_mib_end']} (after {args.soak_idle:g} s idle), "
                    f"max {row['rss_mib_max']}; end/plateau {row['rss_end_over_plateau']} "
                    f"(at most {1 + END_WITHIN:.2f}: {'ok' if row['rss_ok'] else 'too high'})"
                )
            print(
                f"soak: {row['lost_turns']} lost turns of {row['turns']}, {len(row['failed_sessions'])} failed "
                f"sessions; {'passed' if row['passed'] else 'FAILED'}"
            )
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
    if not results.get("soak", {}).get("passed", True):
        sys.exit(1)


if __name__ == "__main__":
    main()
