"""Latency and throughput of the executor daemon: signed tier-0 requests over its real socket.

Run it from the repository root (the ``wingman`` package installed, e.g. ``pip install -e .``)::

    python benchmarks/executor_bench.py
    python benchmarks/executor_bench.py --pg-url postgresql://wingman:wingman@127.0.0.1:5432/wingman_test
    python benchmarks/executor_bench.py --in-process      # client load in the daemon's process
    python benchmarks/executor_bench.py --profile         # cProfile the daemon, print where time goes

What one request is: the client signs a ``whoami`` for an admin (``make_token``, as the bot
does) and POSTs it over the Unix socket; the daemon checks the peer uid, verifies the token,
claims its jti, decides, runs ``whoami``, appends the ``executed`` audit entry with the jti
(one durable commit) and answers 200. Every answer is checked.

It prints, each figure beside its target:

1. **concurrency 1** - ``--sequential`` requests (default 2,000) one after the other:
   latency p50/p95/p99 (target p95 <= 3 ms).
2. **concurrency 32** - ``--concurrent`` requests (default 20,000) from 32 coroutines sharing
   one ``ExecutorClient`` (its connector allows 100 connections): requests/s (target >= 2,000)
   and latency. The tokens are signed before the phase (``--sign-inline``: as they are sent),
   so that the load generator, which shares the machine's cores with the daemon, takes less
   of them; what signing costs the bot is ``bot_bench.py``'s figure.
3. **CPU** - the daemon's CPU time per request in each phase (all its threads, from
   ``/proc``) and the client's at concurrency 32: on a 2-core machine a rate is bounded by
   them whatever the disk does.
4. **floor** - in the benchmark's own process, sequentially, on a fresh store of the same
   backend on the same disk: ``TokenVerifier.verify`` of a signed token plus one durable
   ``AuditStore.append``; the ratio daemon / floor shows what the socket, HTTP, the replay
   claim and the decision add. Beside it: ``verify`` alone, ``append`` alone, a bare
   ``sqlite3`` durable commit (the disk's own floor), and ``Executor.handle`` called directly
   (the whole decision path without HTTP) with the number of calls it makes into aiosqlite's
   worker threads.
5. with ``--profile``, the daemon's event-loop thread under cProfile during the
   concurrency-32 phase only (started and stopped by SIGUSR1/SIGUSR2).

The daemon runs by default in a child process (this script with a hidden flag) and the
client load in this one, so on a 2-core machine each has a core, as the bot and the executor
do in production; ``--in-process`` puts both on one event loop instead, for comparison.

The SQLite database, the keys and the socket live in a temporary directory (``--tmpdir``;
appends are only as fast as that disk's fsync), removed at the end. With ``--pg-url`` (an
admin connection whose role may create databases) the same figures are taken on a scratch
PostgreSQL database ``wingman_bench_<random>``, created and dropped. This is a measurement,
not a test: it exits non-zero only when a request does not get its 200.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import json
import logging
import os
import platform
import pstats
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from audit import AuditStore, generate_key_pair, load_signing_key
from audit.signing import SigningKey
from executor.client import ExecutorClient
from executor.protocol import TokenVerifier, audience_for, make_token
from executor.server import Daemon, serve
from executor.settings import ExecutorSettings

ADMIN = 1
EXECUTOR_NAME = "bench"
AUDIENCE = audience_for(EXECUTOR_NAME)
WARMUP = 100
FLOOR_RUNS = 300
TARGET_P95_MS = 3.0
TARGET_RATE_32 = 2_000
CONCURRENCY = 32


class BenchFailure(Exception):
    pass


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def latency_text(latencies: list[float]) -> str:
    values = sorted(latencies)
    return (
        f"p50 {percentile(values, 0.50) * 1e3:.2f} ms  p95 {percentile(values, 0.95) * 1e3:.2f} ms  "
        f"p99 {percentile(values, 0.99) * 1e3:.2f} ms  max {values[-1] * 1e3:.1f} ms"
    )


def settings_for(work: Path, backend: str, db_url: str | None, key_pub: Path) -> dict[str, Any]:
    home = work / backend
    return {
        "executor_name": EXECUTOR_NAME,
        "data_dir": str(home / "data"),
        "socket": str(home / "run" / "executor.sock"),
        "trusted_keys": [str(key_pub)],
        "admins": [ADMIN],
        # whoami needs no Docker; keep start-up recovery away from the host's engine.
        "docker_host": "unix:///nonexistent/docker.sock",
        **({"db_url": db_url} if db_url else {}),
    }


# -- the daemon, in a child process ----------------------------------------------------------------


def serve_child(config: dict[str, Any], profile_out: str | None) -> None:
    """The hidden ``--serve`` mode: run the daemon until SIGTERM, say "ready" on stdout.

    With ``profile_out``, SIGUSR1 starts cProfile on the event loop's thread and SIGUSR2
    stops it, so the profile covers just the phase the parent brackets.
    """
    settings = ExecutorSettings(**config)
    quiet_logs()
    profiler = cProfile.Profile() if profile_out else None

    def ready() -> None:
        if profiler is not None:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
            loop.add_signal_handler(signal.SIGUSR2, profiler.disable)
        print("ready", flush=True)

    asyncio.run(serve(settings, ready=ready))
    if profiler is not None:
        profiler.dump_stats(profile_out)


def quiet_logs() -> None:
    """Errors only: start-up's warnings (no Docker engine here) would interleave with the figures."""
    logging.basicConfig(level=logging.ERROR, format="%(name)s %(levelname)s: %(message)s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def daemon_process(config: dict[str, Any], profile_out: str | None) -> Any:
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(config)]
    if profile_out:
        command += ["--profile-out", profile_out]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if line.strip() != "ready":
            raise BenchFailure(f"the daemon did not start (exit {child.wait(10)})")
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()


# -- the client load ---------------------------------------------------------------------------------


async def timed_call(client: ExecutorClient, token: str | None = None) -> float:
    """One request: signed here (``token`` None), or a token signed before the phase."""
    started = time.perf_counter()
    reply = await (client.call(ADMIN, "whoami") if token is None else client.send_token(token))
    elapsed = time.perf_counter() - started
    if reply.http_status != 200:
        raise BenchFailure(f"whoami answered {reply.http_status} {reply.status}: {reply.reason}")
    return elapsed


async def load(
    socket_path: Path,
    key: SigningKey,
    sequential: int,
    concurrent: int,
    child: subprocess.Popen[str] | None = None,
    profiling: bool = False,
    sign_inline: bool = False,
) -> dict[str, Any]:
    """Both phases; with ``child`` (the daemon's process) also its CPU time in each, and, when
    ``profiling``, the signals that bracket the concurrency-32 phase for its profiler."""

    def cpu() -> float:
        return cpu_seconds(child.pid) if child is not None else 0.0

    async with ExecutorClient(socket_path, key, executor_name=EXECUTOR_NAME, timeout=60) as client:
        for _ in range(WARMUP):
            await timed_call(client)
        before = cpu()
        one = [await timed_call(client) for _ in range(sequential)]
        cpu_one = cpu() - before

        many: list[float] = []
        tokens: list[str | None] = [None] * CONCURRENCY * 10

        async def worker() -> None:
            while tokens:
                many.append(await timed_call(client, tokens.pop()))

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))  # open and warm the connections
        many = []
        # The load generator shares the machine's cores with the daemon: unless told to sign
        # inline, it signs the phase's tokens first (the bot's signing is bot_bench's figure).
        tokens = [None if sign_inline else make_token(key, audience=AUDIENCE, user_id=ADMIN, action="whoami", lifetime=60) for _ in range(concurrent)]
        if child is not None and profiling:
            child.send_signal(signal.SIGUSR1)
        before, own_before = cpu(), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - started
        cpu_many, own_many = cpu() - before, time.process_time() - own_before
        if child is not None and profiling:
            child.send_signal(signal.SIGUSR2)
    return {
        "one": one,
        "many": many,
        "rate": concurrent / seconds,
        "cpu_one": cpu_one,
        "cpu_many": cpu_many,
        "own_many": own_many,
        "seconds_many": seconds,
    }


async def load_in_process(config: dict[str, Any], key: SigningKey, sequential: int, concurrent: int, sign_inline: bool) -> dict[str, Any]:
    daemon = Daemon(ExecutorSettings(**config))
    await daemon.start()
    try:
        return await load(Path(config["socket"]), key, sequential, concurrent, sign_inline=sign_inline)
    finally:
        await daemon.stop()


# -- the floor -----------------------------------------------------------------------------------------


async def floor(db_url: str, key: SigningKey, work: Path) -> dict[str, Any]:
    """verify + one durable append, sequentially, in this process; and their parts."""
    verifier = TokenVerifier({key.kid: key.public}, AUDIENCE)
    store = await AuditStore.open(db_url)
    try:
        for _ in range(20):
            await store.append(actor="system", action="bench.warmup", decision="done")
        tokens = [make_token(key, audience=AUDIENCE, user_id=ADMIN, action="whoami") for _ in range(FLOOR_RUNS)]
        verify_only, append_only, both = [], [], []
        for token in tokens:
            started = time.perf_counter()
            request = verifier.verify(token, time.time())
            verify_only.append(time.perf_counter() - started)
        for token in tokens:
            started = time.perf_counter()
            await store.append(actor="tg:1", action="whoami", decision="executed", outcome="you are tg:1, admin", request_id=secrets.token_hex(8))
            append_only.append(time.perf_counter() - started)
        for token in tokens:
            started = time.perf_counter()
            request = verifier.verify(token, time.time())
            await store.append(actor=request.actor, action=request.action, decision="executed", outcome="you are tg:1, admin", request_id=secrets.token_hex(8))
            both.append(time.perf_counter() - started)
    finally:
        await store.close()
    return {"verify": verify_only, "append": append_only, "both": both}


async def handle_direct(config: dict[str, Any], key: SigningKey) -> tuple[list[float], float]:
    """Executor.handle on a daemon of this process, called without the socket and HTTP; and
    how many calls into aiosqlite's worker threads one request makes (SQLite only)."""
    import aiosqlite.core

    calls = 0
    original = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return await original(self, fn, *args, **kwargs)

    daemon = Daemon(ExecutorSettings(**config))
    await daemon.start()
    aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]
    try:
        assert daemon.executor is not None
        times = []
        for i in range(FLOOR_RUNS + 20):
            token = make_token(key, audience=AUDIENCE, user_id=ADMIN, action="whoami")
            if i == 20:
                calls = 0
            started = time.perf_counter()
            reply = await daemon.executor.handle(token)
            if reply.status != "done":
                raise BenchFailure(f"handle answered {reply.status}: {reply.reason}")
            if i >= 20:
                times.append(time.perf_counter() - started)
        return times, calls / FLOOR_RUNS
    finally:
        aiosqlite.core.Connection._execute = original  # type: ignore[method-assign]
        await daemon.stop()


def bare_sqlite_commit(work: Path) -> float:
    """Median seconds of one durable commit with the sqlite3 module alone (WAL, synchronous=FULL)."""
    path = work / "bare.db"
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("CREATE TABLE t (x TEXT)")
        times = []
        for _ in range(300):
            started = time.perf_counter()
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO t VALUES (?)", ("x" * 300,))
            connection.execute("COMMIT")
            times.append(time.perf_counter() - started)
    finally:
        connection.close()
    return percentile(sorted(times), 0.5)


# -- PostgreSQL scratch database --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pg_scratch(admin_url: str) -> Any:
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(admin_url)
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn, timeout=5)
    name = f"wingman_bench_{secrets.token_hex(4)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield parsed.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# -- main ---------------------------------------------------------------------------------------------


def run_backend(
    label: str, config: dict[str, Any], floor_url: str, key: SigningKey, work: Path, args: argparse.Namespace
) -> None:
    started = time.perf_counter()
    profile_out = str(work / f"{label}.prof") if args.profile else None
    if args.in_process:
        result = asyncio.run(load_in_process(config, key, args.sequential, args.concurrent, args.sign_inline))
        where = "daemon and client on one event loop"
    else:
        with daemon_process(config, profile_out) as child:
            result = asyncio.run(
                load(Path(config["socket"]), key, args.sequential, args.concurrent, child, args.profile, args.sign_inline)
            )
        where = "daemon in a child process, client here"
    one, many, rate = result["one"], result["many"], result["rate"]
    p95 = percentile(sorted(one), 0.95) * 1e3
    print(f"{label:<10} {where}")
    print(
        f"  concurrency 1   {args.sequential:>6,} requests  {len(one) / sum(one):>7,.0f}/s  {latency_text(one)}"
        f"   target p95 <= {TARGET_P95_MS:g} ms {mark(p95 <= TARGET_P95_MS)}"
    )
    print(
        f"  concurrency {CONCURRENCY}  {args.concurrent:>6,} requests  {rate:>7,.0f}/s  {latency_text(many)}"
        f"   target >= {TARGET_RATE_32:,}/s {mark(rate >= TARGET_RATE_32)}"
        + ("" if args.sign_inline else "   (tokens signed before the phase)")
    )
    own = f"{result['own_many'] / len(many) * 1e6:,.0f} us/request ({result['own_many'] / result['seconds_many']:.0%} of a core)"
    if not args.in_process:
        print(
            f"  CPU             daemon at concurrency 1: {result['cpu_one'] / len(one) * 1e6:,.0f} us/request"
            f" ({result['cpu_one'] / sum(one):.0%} of a core); at {CONCURRENCY}: {result['cpu_many'] / len(many) * 1e6:,.0f}"
            f" us/request ({result['cpu_many'] / result['seconds_many']:.0%} of a core; all its threads); client at {CONCURRENCY}: {own}"
        )
    else:
        print(f"  CPU             daemon and client together at concurrency {CONCURRENCY}: {own}")
    parts = asyncio.run(floor(floor_url, key, work))
    direct, round_trips = asyncio.run(handle_direct({**config, "socket": str(Path(config["socket"]).parent / "direct.sock")}, key))
    both = sorted(parts["both"])
    p50_floor, p95_floor = percentile(both, 0.5) * 1e3, percentile(both, 0.95) * 1e3
    print(
        f"  floor           verify + 1 durable append, in process: p50 {p50_floor:.2f} ms  p95 {p95_floor:.2f} ms"
        f"  (= {1 / (sum(both) / len(both)):,.0f}/s sequential)"
    )
    print(
        f"  parts           verify alone p50 {percentile(sorted(parts['verify']), 0.5) * 1e6:.0f} us;"
        f" append alone p50 {percentile(sorted(parts['append']), 0.5) * 1e3:.2f} ms"
        + (f"; a bare sqlite3 durable commit on this disk p50 {bare_sqlite_commit(work) * 1e3:.2f} ms" if label == "sqlite" else "")
    )
    print(
        f"  no HTTP         Executor.handle called in process: {latency_text(direct)}"
        + (f"; {round_trips:.0f} calls into aiosqlite threads per request" if round_trips else "")
    )
    p50_one = percentile(sorted(one), 0.5) * 1e3
    print(
        f"  ratio           concurrency-1 p50 / floor p50 = {p50_one / p50_floor:.2f};"
        f" p95 / floor p95 = {p95 / p95_floor:.2f}   ({time.perf_counter() - started:.0f} s)"
    )
    if profile_out and Path(profile_out).exists():
        print_profile(profile_out, len(many))


# Where a request's time goes on the daemon's event-loop thread: (label, file, function).
COMPONENTS = (
    ("waiting in epoll (idle or blocked on other threads)", "~", "<method 'poll' of 'select.epoll' objects>"),
    ("handing work to aiosqlite threads (SimpleQueue.put_nowait)", "~", "<method 'put_nowait' of '_queue.SimpleQueue' objects>"),
    ("TokenVerifier.verify (PyJWT + Ed25519)", "protocol.py", "verify"),
    ("  of it Ed25519 signature checks", "~", "<method 'verify' of 'cryptography.hazmat.bindings._rust.openssl.ed25519.Ed25519PublicKey' objects>"),
    ("  of it PyJWT base64url alphabet checks", "api_jws.py", "_decode_base64url_segment"),
    ("aiohttp parsing (RequestHandler.data_received)", "web_protocol.py", "data_received"),
)


def print_profile(path: str, requests: int) -> None:
    stats = pstats.Stats(path)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())  # own times add up to the whole
    print(
        f"  profile of the daemon's event-loop thread, concurrency-{CONCURRENCY} phase (cProfile: its overhead"
        f" inflates the figures; coroutines count their own running time only): {total:.1f} s in all"
    )
    for label, file, function in COMPONENTS:
        cumulative = sum(v[3] for k, v in entries.items() if Path(k[0]).name == file and k[2] == function)
        print(f"    {cumulative:6.2f} s  {cumulative / requests * 1e6:7.0f} us/request  {label}")
    # The database transactions run across greenlet switches and threads: cProfile cannot
    # attribute them reliably; see the round trips counted in the in-process line instead.
    print("    top by own time:")
    for func, (_cc, calls, own, cumulative, _callers) in sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:12]:
        name = f"{Path(func[0]).name}:{func[1]}({func[2]})"
        print(f"    {own:6.2f} s own {cumulative:7.2f} s cum {calls:>8} calls  {name[:100]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=2_000, help="requests at concurrency 1 (default 2,000)")
    parser.add_argument("--concurrent", type=int, default=20_000, help="requests at concurrency 32 (default 20,000)")
    parser.add_argument("--pg-url", default=None, help="also run on PostgreSQL (an admin URL that may create databases)")
    parser.add_argument("--sign-inline", action="store_true", help="sign each concurrency-32 token as it is sent")
    parser.add_argument("--in-process", action="store_true", help="run the client load on the daemon's event loop")
    parser.add_argument("--profile", action="store_true", help="cProfile the daemon child and print the top functions")
    parser.add_argument("--tmpdir", default=None, help="where the SQLite database and socket go (default /tmp)")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve_child(json.loads(args.serve), args.profile_out)
        return 0

    quiet_logs()
    begun = time.perf_counter()
    print(f"executor benchmark  {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(
        f"machine             nproc {len(os.sched_getaffinity(0))} ({os.cpu_count()} CPUs), {platform.machine()}, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; aiohttp {aiohttp.__version__}; "
        f"SQLite {sqlite3.sqlite_version}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    # Short: a Unix socket path holds at most 107 bytes.
    work = Path(tempfile.mkdtemp(prefix="wm-bench-", dir=args.tmpdir or "/tmp"))
    failed = False
    try:
        key_path, pub_path = generate_key_pair(work / "keys", "bot")
        key = load_signing_key(key_path)
        print(f"scratch             {work}")
        run_backend("sqlite", settings_for(work, "sqlite", None, pub_path), f"sqlite+aiosqlite:///{work / 'floor.db'}", key, work, args)
        if args.pg_url:
            run_pg(args, work, key, pub_path)
    except BenchFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        failed = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total               {time.perf_counter() - begun:.0f} s")
    return 1 if failed else 0


def run_pg(args: argparse.Namespace, work: Path, key: SigningKey, pub_path: Path) -> None:
    """Two scratch databases, one for the daemon and one for the floor, created and dropped."""
    loop = asyncio.new_event_loop()
    daemon_db, floor_db = pg_scratch(args.pg_url), pg_scratch(args.pg_url)
    try:
        daemon_url = loop.run_until_complete(daemon_db.__aenter__())
        floor_url = loop.run_until_complete(floor_db.__aenter__())
    except Exception as exc:  # unreachable server, no right to create databases, ...
        print(f"postgresql skipped: {type(exc).__name__}: {exc}")
        loop.close()
        return
    try:
        run_backend("postgresql", settings_for(work, "pg", daemon_url, pub_path), floor_url, key, work, args)
    finally:
        loop.run_until_complete(floor_db.__aexit__(None, None, None))
        loop.run_until_complete(daemon_db.__aexit__(None, None, None))
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
