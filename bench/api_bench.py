"""API throughput: signed StartCDNRecord/StopCDNRecord against a real `cdnrec serve` process.

The server runs pinned to one core (`taskset -c 0`, uvicorn with uvloop and httptools, SQLite);
wrk runs pinned to another core and sends request lines signed beforehand (every request needs a
fresh nonce). The server is started with `--role api` so that no recorder picks the created tasks
up, and with the per-app rate limit raised out of the way (it is 20/s per app by default).

Scenarios, each after a warm-up:
  mix        Start and Stop alternating on the same streams, across all apps (closed loop)
  start      Start of a new stream every time (a task row inserted per request; closed loop)
  mix@1000   the mix paced to 1,000 req/s (latency at the target rate)
  start@1000 Start alone paced to 1,000 req/s

Prints a markdown table and writes it to bench/results/api-<stamp>.md.
Usage: .venv/bin/python bench/api_bench.py [--duration 15] [--connections 16]
       [--paced-connections 64] [--apps 100]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "wrk_signed.lua"
FIRST_APP = 100_001
TARGET_RPS = 1000
TARGET_P99_MS = 50.0


@dataclass(frozen=True)
class Result:
    """What one wrk run measured."""

    scenario: str
    connections: int
    paced: bool
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    ok: int
    answered: int
    server_cpu: float
    socket_errors: str
    loadavg: float


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def secret_of(app_id: int) -> str:
    """The server secret of a bench app."""
    return hashlib.md5(f"bench-{app_id}".encode(), usedforsecurity=False).hexdigest()


def write_config(folder: Path, port: int, apps: int) -> Path:
    """A config with `apps` apps, the rate limit raised out of the way."""
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        f'public_url = "http://127.0.0.1:{port}"',
        f'data_dir = "{folder / "data"}"',
        "",
        "[limits]",
        "media_rps = 1000000   # raised for the benchmark; the default is 20 per app",
        "",
    ]
    for app_id in range(FIRST_APP, FIRST_APP + apps):
        lines += [
            "[[apps]]",
            f"app_id = {app_id}",
            f'server_secret = "{secret_of(app_id)}"',
            "[apps.vendors.Tencent]",
            'sources = ["rtmp://127.0.0.1:1/live/{stream_id}"]',
            "",
        ]
    path = folder / "cdnrec.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def request_line(app_id: int, action: str, stream: str, timestamp: int) -> str:
    """One signed GET request target."""
    nonce = secrets.token_hex(8)
    material = f"{app_id}{nonce}{secret_of(app_id)}{timestamp}".encode()
    signature = hashlib.md5(material, usedforsecurity=False).hexdigest()
    return (
        f"/?Action={action}&AppId={app_id}&SignatureNonce={nonce}&Timestamp={timestamp}"
        f"&Signature={signature}&SignatureVersion=2.0&StreamId[]={stream}&Vendor=Tencent"
    )


def write_lines(path: Path, scenario: str, count: int, apps: int, run: str) -> None:
    """`count` signed requests for a scenario; stream names are unique per run."""
    now = int(time.time())
    with path.open("w", encoding="ascii") as out:
        for i in range(count):
            app_id = FIRST_APP + i % apps
            if scenario == "start":
                out.write(request_line(app_id, "StartCDNRecord", f"{run}s{i}", now) + "\n")
            else:
                pair, stop = divmod(i, 2)
                action = "StopCDNRecord" if stop else "StartCDNRecord"
                stream = f"{run}m{(pair // apps) % 500}"
                out.write(request_line(FIRST_APP + pair % apps, action, stream, now) + "\n")


def api_counts(base: str) -> tuple[int, int]:
    """(answers with Code 0, all answers) from the server's Prometheus metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    ok = total = 0
    pattern = r'^cdnrec_api_requests_total\{action="([^"]*)",code="(-?\d+)"\} ([0-9.e+]+)$'
    for match in re.finditer(pattern, text, re.M):
        value = int(float(match.group(3)))
        total += value
        if match.group(2) == "0":
            ok += value
    return ok, total


def to_ms(value: str) -> float:
    """wrk's '1.23ms' / '456.00us' / '1.02s' in milliseconds."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s)", value.strip())
    if not match:
        raise ValueError(f"cannot read wrk latency {value!r}")
    number, unit = float(match.group(1)), match.group(2)
    return {"us": number / 1000, "ms": number, "s": number * 1000}[unit]


@contextlib.contextmanager
def server(config: Path, port: int) -> Iterator[psutil.Process]:
    """`cdnrec serve --role api` on core 0, until the block ends."""
    cdnrec = Path(sys.executable).with_name("cdnrec")
    command = ["taskset", "-c", "0", str(cdnrec), "serve", "--config", str(config), "--role", "api"]
    log = (config.parent / "server.log").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=config.parent)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {log.name}") from None
                time.sleep(0.1)
        yield psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def run_wrk(
    url: str, lines: Path, duration: int, connections: int, rate: int | None
) -> tuple[str, float, int]:
    """Run wrk on core 1; return (its output, server-independent wall time, exit code)."""
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{duration}s",
        "--latency", "--timeout", "10s", "-s", str(LUA), url, "--", str(lines),
    ]  # fmt: skip
    env = dict(os.environ)
    env.pop("WRK_RATE", None)
    if rate:
        env["WRK_RATE"] = str(rate)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    return done.stdout + done.stderr, time.monotonic() - started, done.returncode


def parse_wrk(output: str) -> tuple[int, float, dict[str, float], str]:
    """(requests, req/s, latency percentiles in ms, socket errors) from `wrk --latency`."""
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = {
        m.group(1): to_ms(m.group(2))
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.M)
    }
    errors = re.search(r"Socket errors: (.*)$", output, re.M)
    return requests, rps, percentiles, errors.group(1) if errors else "none"


def measure(
    proc: psutil.Process,
    base: str,
    folder: Path,
    scenario: str,
    *,
    apps: int,
    duration: int,
    connections: int,
    paced: bool,
    run: str,
) -> Result:
    """One wrk run of a scenario, checked against the server's own counts."""
    capacity = (TARGET_RPS + 200 if paced else 8_000) * (duration + 2)
    lines = folder / f"{run}.lines"
    write_lines(lines, scenario, capacity, apps, run)
    rate = TARGET_RPS if paced else None
    ok_before, total_before = api_counts(base)
    proc.cpu_percent(None)
    output, _, code = run_wrk(base + "/", lines, duration, connections, rate)
    cpu = proc.cpu_percent(None)
    if code != 0:
        raise RuntimeError(f"wrk failed:\n{output}")
    ok_after, total_after = api_counts(base)
    try:
        requests, rps, pct, errors = parse_wrk(output)
    except (AttributeError, KeyError) as exc:
        raise RuntimeError(f"cannot read the wrk output:\n{output}") from exc
    if requests > capacity:
        raise RuntimeError(f"{requests} requests but only {capacity} signed lines: nonces replayed")
    lines.unlink()
    label = f"{scenario}@{TARGET_RPS}" if paced else scenario
    return Result(
        label, connections, paced, requests, rps, pct["50"], pct["90"], pct["99"],
        ok_after - ok_before, total_after - total_before, cpu, errors, os.getloadavg()[0],
    )  # fmt: skip


def table(results: list[Result]) -> str:
    """The results as a markdown table."""
    rows = [
        "| scenario | connections | load | req/s | p50 ms | p90 ms | p99 ms | Code 0 "
        "| server CPU | machine load avg | socket errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        load = f"paced {TARGET_RPS}/s" if r.paced else "closed loop"
        ok = f"{r.ok}/{r.answered}"
        rows.append(
            f"| {r.scenario} | {r.connections} | {load} | {r.rps:,.0f} | {r.p50_ms:.2f} "
            f"| {r.p90_ms:.2f} | {r.p99_ms:.2f} | {ok} | {r.server_cpu:.0f}% | {r.loadavg:.2f} "
            f"| {r.socket_errors} |"
        )
    return "\n".join(rows)


def verdict(results: list[Result]) -> str:
    """Whether the target (1,000 req/s with p99 < 50 ms on one core) was met."""
    lines = []
    for r in results:
        if r.paced:
            met = r.rps >= TARGET_RPS * 0.95 and r.p99_ms < TARGET_P99_MS and r.ok == r.answered
            lines.append(
                f"- {r.scenario}: {r.rps:,.0f} req/s, p99 {r.p99_ms:.2f} ms → "
                f"{'target met' if met else 'TARGET MISSED'}"
            )
        else:
            lines.append(
                f"- {r.scenario}: capacity {r.rps:,.0f} req/s on one core "
                f"({r.rps / TARGET_RPS:.1f}× the target), p99 {r.p99_ms:.2f} ms at {r.connections} connections"
            )
    return "\n".join(lines)


def main() -> None:
    """Run every scenario and publish the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per scenario")
    parser.add_argument("--connections", type=int, default=16, help="closed-loop runs")
    parser.add_argument("--paced-connections", type=int, default=64, help="paced runs")
    parser.add_argument("--apps", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y wrk util-linux")
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two cores: the server on one, wrk on the other")

    folder = Path(tempfile.mkdtemp(prefix="cdnrec-api-bench-"))
    port = free_port()
    config = write_config(folder, port, args.apps)
    base = f"http://127.0.0.1:{port}"
    results: list[Result] = []
    try:
        with server(config, port) as proc:
            for scenario, paced in (
                ("mix", False),
                ("start", False),
                ("mix", True),
                ("start", True),
            ):
                for duration, run in ((args.warmup, "w"), (args.duration, "r")):
                    result = measure(
                        proc, base, folder, scenario,
                        apps=args.apps, duration=duration,
                        connections=args.paced_connections if paced else args.connections,
                        paced=paced, run=f"{run}{len(results)}",
                    )  # fmt: skip
                print(
                    f"{result.scenario}: {result.rps:,.0f} req/s p99 {result.p99_ms:.2f} ms",
                    flush=True,
                )
                results.append(result)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    command = "taskset -c 0 cdnrec serve --role api (uvloop, httptools, SQLite) | taskset -c 1 wrk -t1 --latency -s bench/wrk_signed.lua"
    report = "\n".join(
        [
            f"# API benchmark {stamp}",
            "",
            f"Command: `.venv/bin/python bench/api_bench.py --duration {args.duration} "
            f"--connections {args.connections} --paced-connections {args.paced_connections} "
            f"--apps {args.apps}`",
            f"({command}).",
            f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}.",
            f"{args.apps} apps in the config; every request signed with a fresh nonce; "
            "per-app rate limit raised to 1,000,000/s for the run (default 20/s); `--role api`, so no "
            "recorder runs. Closed loop: wrk sends as fast as answers come (capacity). Paced: requests "
            f"leave on a {TARGET_RPS}/s schedule (latency at the target rate; wrk measures from the "
            "actual send, so a server that falls behind shows as a lower req/s). Server CPU: the "
            "server's share of its core during the run; the machine is shared, see load avg.",
            "",
            table(results),
            "",
            verdict(results),
            "",
        ]
    )
    print()
    print(report)
    out = BENCH / "results" / f"api-{stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(f"written to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
