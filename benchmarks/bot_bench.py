"""The bot's own cost: latency from an update to the signed request, and idle memory.

Run it from the repository root (the ``wingman`` package installed, e.g. ``pip install -e .``)::

    python benchmarks/bot_bench.py
    python benchmarks/bot_bench.py --updates 2000 --settle 10
    python benchmarks/bot_bench.py --diagnose     # also where the time and memory go

Everything Telegram-facing talks to the Bot API test double of the suite
(``tests.doubles.telegram.TelegramDouble``, a real HTTP server on 127.0.0.1, served on this
script's event loop); everything executor-facing talks to a real executor,
``python -m wingman executor`` in a child process on its real Unix socket (its own core, as in
production), with a throwaway SQLite database and keys in a temporary directory. The
executor's ``DOCKER_HOST`` points at a socket that does not exist, so the host's Docker engine
is never touched (``whoami`` needs none).

It prints, each figure beside its target:

1. **update -> request** - ``--updates`` (default 1,000) ``/whoami`` updates, each written by a
   distinct user in the double (so the per-user rate limit, 20 a minute, never interferes)
   are fed one after the other through the bot's real wiring: a ``bot.app.BotApp`` (its
   ``Bot`` with the retry middleware on an aiohttp session pointed at the double, its
   ``Dispatcher`` with ``ChatGate`` and ``RateLimit`` and ``build_router()``) via
   ``dispatcher.feed_update(bot, update, fleet=...)``, as its polling loop does. The
   interval runs from ``feed_update`` being called until ``ExecutorClient.send_token`` is
   entered, i.e. until the signed token is made and is about to go out; that is recorded by
   a thin subclass of ``ExecutorClient`` in this script (instrumentation, not a mock: the real
   request is still sent and its answer, ``done``, checked). p50/p95/p99 (target p95 <= 5 ms).
   Beside it: the floor, ``make_token`` alone on the same key and inputs (p50/p95), and the
   ratio; the rest of each update (the executor's round trip, the reply to Telegram); and,
   outside the interval, what aiogram's polling loop spends before ``feed_update`` turning
   one update's JSON into an ``Update``. Updates are 1 ms apart, so work left over from one
   (the double's server side, say) is not charged to the next.
2. **idle memory** - ``python -m wingman executor`` (its second start: the first, shown
   beside, creates and migrates the database) and ``python -m wingman bot`` as separate
   child processes, configured through the environment as in production, each waited for
   until its log says it is ready ("executor listening on", "bot started"), then left idle
   for ``--settle`` seconds (default 5; the bot long-polls the double and the executor for
   notifications meanwhile): ``VmRSS`` from ``/proc/<pid>/status`` (target <= 80 MB each),
   with its anonymous / file-backed split, the peak (``VmHWM``) and, from ``smaps_rollup``,
   the PSS (shared file pages divided among the processes mapping them). For context, the bot's
   RSS again after it has answered 100 ``/whoami`` from the double, and the executor's after
   all of this benchmark's requests. Both are stopped with SIGTERM and must exit 0. (This
   part runs first, so the daemons are fresh; 1 then uses the same executor.)

With ``--diagnose`` (or automatically when a target is missed) it also prints where the time
goes (cProfile over 300 more updates, the interval only) and where the memory goes: the RSS
of a fresh interpreter importing what each daemon imports, step by step; beside it, a bare
``import aiogram``, which builds every type's validator at import (the bot defers that, see
``bot.lazy_types``); and ``python -X importtime``'s split of ``bot.app`` and
``executor.server`` by package.

This is a measurement, not a test: it exits non-zero only when something does not work (a
request not ``done``, a process that does not start or does not exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import json
import logging
import os
import platform
import pstats
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.doubles.telegram, and the packages without an install

from bot import lazy_types  # noqa: E402,F401  (first: aiogram as the bot imports it, see bot.lazy_types)
import aiogram  # noqa: E402
import aiohttp  # noqa: E402
from aiogram.types import Update  # noqa: E402

from audit import generate_key_pair, load_signing_key  # noqa: E402
from bot.app import BotApp  # noqa: E402
from bot.fleet import Fleet  # noqa: E402
from executor.client import ExecutorClient, Reply  # noqa: E402
from executor.protocol import audience_for, make_token  # noqa: E402
from tests.doubles.telegram import DEFAULT_TOKEN, TelegramDouble  # noqa: E402
from bot.settings import BotSettings  # noqa: E402

EXECUTOR_NAME = "bench"
AUDIENCE = audience_for(EXECUTOR_NAME)
TARGET_P95_MS = 5.0
TARGET_RSS_MB = 80.0
WARMUP = 100
GAP = 0.001  # between updates
TEAM_CHAT = -1001234567890
FIRST_USER = 10_000  # users of the in-process bot: FIRST_USER .. FIRST_USER + WARMUP + updates
CHILD_USERS = 100  # /whoami answered by the bot child before its second RSS reading
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 40.0
PROFILE_UPDATES = 300
EXPECTED_WARNING = "unix:///nonexistent/docker.sock"


class BenchFailure(Exception):
    pass


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def ms(values: list[float], *ps: float) -> str:
    return "  ".join(f"p{round(p * 100)} {percentile(values, p) * 1e3:.3f} ms" for p in ps)


# -- 1. update -> signed request ------------------------------------------------------------------


class TimedClient(ExecutorClient):
    """The bot's executor client, noting when a signed token is handed over and when its answer
    is back. Measurement only: the request is the real one, sent over the real socket."""

    entered = 0.0
    answered = 0.0
    last: Reply | None = None

    async def send_token(self, token: str) -> Reply:
        self.entered = time.perf_counter()
        reply = await super().send_token(token)
        self.answered = time.perf_counter()
        self.last = reply
        return reply


def bot_settings(double: TelegramDouble, socket_path: Path, key_path: Path, data_dir: Path) -> BotSettings:
    return BotSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        socket=socket_path,
        telegram_bot_token=double.token,
        telegram_api_base=double.base_url,
        chat_id=TEAM_CHAT,
        bot_key=key_path,
    )


async def feed(app: BotApp, client: TimedClient, double: TelegramDouble, user_id: int) -> tuple[float, float, float]:
    """One /whoami from ``user_id`` through the dispatcher, to the one executor through
    ``client``: (to the request, the executor's round trip, the rest) in seconds."""
    double.send_text(user_id, "/whoami")
    update = Update.model_validate(double.updates[-1], context={"bot": app.bot})  # mounted, as polling does
    client.last = None
    fleet = Fleet({None: client})
    started = time.perf_counter()
    await app.dispatcher.feed_update(app.bot, update, fleet=fleet)
    ended = time.perf_counter()
    reply = client.last
    if reply is None or reply.status != "done":
        raise BenchFailure(f"/whoami from {user_id}: the executor answered {reply}")
    return client.entered - started, client.answered - client.entered, ended - client.answered


async def measure_latency(double: TelegramDouble, socket_path: Path, key_path: Path, work: Path, updates: int, profile: bool) -> dict[str, Any]:
    app = BotApp(bot_settings(double, socket_path, key_path, work / "bot-in-process"))
    key = load_signing_key(key_path)
    client = TimedClient(socket_path, key, executor_name=EXECUTOR_NAME, timeout=30)
    user = FIRST_USER
    try:
        sent_before = len(double.calls_to("sendMessage"))
        for _ in range(WARMUP):
            await feed(app, client, double, user)
            user += 1
            await asyncio.sleep(GAP)
        to_request, executor, rest = [], [], []
        for _ in range(updates):
            a, b, c = await feed(app, client, double, user)
            user += 1
            to_request.append(a)
            executor.append(b)
            rest.append(c)
            await asyncio.sleep(GAP)
        replies = [c for c in double.calls_to("sendMessage")[sent_before:] if c.ok]
        if len(replies) != WARMUP + updates:
            raise BenchFailure(f"the double saw {len(replies)} successful replies, expected {WARMUP + updates}")
        sample = replies[-1].params.get("text", "")

        # The floor: the signing the handler does, alone, same key and inputs.
        chat = {"chat_id": FIRST_USER, "private": True, "message_id": 1}
        for _ in range(WARMUP):
            make_token(key, audience=AUDIENCE, user_id=FIRST_USER, action="whoami", args={}, chat=chat)
        signing = []
        for i in range(updates):
            started = time.perf_counter()
            make_token(key, audience=AUDIENCE, user_id=FIRST_USER + i, action="whoami", args={}, chat=chat)
            signing.append(time.perf_counter() - started)

        # Outside the interval: aiogram's polling turns the response JSON into Update objects.
        raw = [json.dumps({"ok": True, "result": [u]}) for u in double.updates[-updates:]]
        parsing = []
        for text in raw:
            started = time.perf_counter()
            body = json.loads(text)
            Update.model_validate(body["result"][0], context={"bot": app.bot})
            parsing.append(time.perf_counter() - started)

        profiled = None
        if profile:
            profiled = await profile_interval(app, client, double, user)
    finally:
        await client.close()
        await app.fleet.close()
        await app.bot.session.close()
    return {
        "to_request": to_request,
        "executor": executor,
        "rest": rest,
        "signing": signing,
        "parsing": parsing,
        "sample": sample,
        "profile": profiled,
    }


async def profile_interval(app: BotApp, client: TimedClient, double: TelegramDouble, user: int) -> pstats.Stats:
    """cProfile switched on at feed_update and off when the request leaves, PROFILE_UPDATES times."""
    profiler = cProfile.Profile()
    original = TimedClient.send_token

    async def stop_then_send(self: TimedClient, token: str) -> Reply:
        profiler.disable()
        return await original(self, token)

    client.send_token = stop_then_send.__get__(client)  # type: ignore[method-assign]
    fleet = Fleet({None: client})
    try:
        for i in range(PROFILE_UPDATES):
            double.send_text(user + i, "/whoami")
            update = Update.model_validate(double.updates[-1], context={"bot": app.bot})
            profiler.enable()
            await app.dispatcher.feed_update(app.bot, update, fleet=fleet)
            await asyncio.sleep(GAP)
    finally:
        profiler.disable()
        del client.send_token
    return pstats.Stats(profiler)


def print_profile(stats: pstats.Stats) -> None:
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())
    print(
        f"  where the time goes (cProfile over {PROFILE_UPDATES} more updates, the interval only; its overhead"
        f" inflates everything): {total / PROFILE_UPDATES * 1e6:.0f} us/update in all"
    )

    def cumulative(file: str, function: str) -> float:
        return sum(v[3] for k, v in entries.items() if k[0].endswith(file) and k[2] == function)

    signing = cumulative("executor/protocol.py", "make_token")
    filters = cumulative("aiogram/dispatcher/event/handler.py", "check")
    ours = sum(v[2] for k, v in entries.items() if f"{REPO}/bot/" in k[0] or k[0].endswith("executor/client.py"))
    parts = (
        ("make_token (PyJWT + Ed25519 signing)", signing),
        ("  of it Ed25519 sign", cumulative("~", "<method 'sign' of 'cryptography.hazmat.bindings._rust.openssl.ed25519.Ed25519PrivateKey' objects>")),
        ("aiogram's filter checks (Command, F.text, callback data)", filters),
        ("our own code in bot/ and executor/client.py, own time (middlewares, parse, handler)", ours),
        ("the rest: aiogram's dispatch (observers, middleware wrapping, context) and the stdlib", total - signing - filters - ours),
    )
    for label, seconds in parts:
        print(f"    {seconds / PROFILE_UPDATES * 1e6:7.0f} us/update  {label}")
    print("    top by own time:")
    for func, (_cc, calls, own, cum, _callers) in sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:10]:
        where = f"{'/'.join(Path(func[0]).parts[-2:])}:{func[1]}({func[2]})"
        print(f"    {own / PROFILE_UPDATES * 1e6:7.1f} us own {cum / PROFILE_UPDATES * 1e6:7.1f} us cum {calls // PROFILE_UPDATES:>4}/update  {where[:100]}")


# -- 2. the daemons as child processes ------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """This environment without Wingman's, Telegram's, Docker's or Proxmox's settings."""
    prefixes = ("WINGMAN_", "TELEGRAM_", "DOCKER_", "PROXMOX_", "RETENTION_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile (status) and Pss (smaps_rollup), in MB."""
    values = {}
    for source, wanted in (("status", ("VmRSS", "VmHWM", "RssAnon", "RssFile")), ("smaps_rollup", ("Pss",))):
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in wanted:
                values[name] = int(rest.split()[0]) / 1024
    return values


def rss_text(status: dict[str, float]) -> str:
    return (
        f"VmRSS {status['VmRSS']:5.1f} MB (anon {status['RssAnon']:.1f}, file-backed {status['RssFile']:.1f};"
        f" PSS {status['Pss']:.1f}; peak {status['VmHWM']:.1f})"
    )


class Child:
    """``python -m wingman <command>`` with its log drained into memory."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name, self.env, self.cwd = name, env, cwd
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._readers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self.ready_after = 0.0

    async def start(self, marker: str) -> None:
        started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wingman", self.name,
            env=self.env, cwd=self.cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [asyncio.create_task(self._drain(s)) for s in (self.process.stdout, self.process.stderr)]
        deadline = started + READY_TIMEOUT
        while not any(marker in line for line in self.lines):
            if self.process.returncode is not None:
                raise BenchFailure(f"{self.name} exited {self.process.returncode} before it was ready:\n{self.log()}")
            if time.perf_counter() > deadline:
                raise BenchFailure(f"{self.name} not ready after {READY_TIMEOUT:.0f} s:\n{self.log()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), 0.2)
            except TimeoutError:
                pass
        self.ready_after = time.perf_counter() - started

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._changed.set()

    def log(self, last: int = 15) -> str:
        return "\n".join(f"    | {line}" for line in self.lines[-last:])

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def stop(self) -> tuple[int | None, float]:
        """SIGTERM; the exit status (None: killed after EXIT_TIMEOUT) and how long it took."""
        if self.process is None or self.process.returncode is not None:
            return (self.process.returncode if self.process else None), 0.0
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            code: int | None = await asyncio.wait_for(self.process.wait(), EXIT_TIMEOUT)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            code = None
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code, time.perf_counter() - started

    def warnings(self) -> list[str]:
        return [line for line in self.lines if " WARNING " in line or " ERROR " in line or "Traceback" in line]


# -- diagnostics: where the memory goes ---------------------------------------------------------


# What each daemon imports, grouped, in an order where each group's own dependencies came
# before it, so that each step's RSS increase is (roughly) that group's own cost.
IMPORT_STEPS = {
    "executor": (
        "aiohttp", "pydantic_settings", "jwt, cryptography.hazmat.primitives.asymmetric.ed25519",
        "sqlalchemy.ext.asyncio, aiosqlite", "docker", "apscheduler, yaml, tzlocal",  # Alembic: only to migrate
        "executor.server",
    ),
    "bot": (
        "aiohttp", "pydantic_settings", "jwt, cryptography.hazmat.primitives.asymmetric.ed25519",
        "bot",  # aiogram, its types built on first use (bot.lazy_types)
        "bot.app",
    ),
}  # fmt: skip

STEPWISE_RSS = """
import importlib, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
print(f'{rss():.1f} python')
for step in sys.argv[1:]:
    for module in step.split(', '):
        importlib.import_module(module)
    print(f'{rss():.1f} {step}')
"""

# For comparison: aiogram imported as it comes, building every type's validator at import
# (the loop at the end of aiogram.types), which bot.lazy_types defers to first use.
EAGER_AIOGRAM = """
import time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
started = time.perf_counter()
import aiogram
print(f'{rss():.1f} {time.perf_counter() - started:.2f}')
"""


def python_lines(code: str, env: dict[str, str], cwd: Path, *args: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def import_times(module: str, env: dict[str, str], cwd: Path, top: int = 7) -> tuple[float, list[tuple[float, str]]]:
    """``python -X importtime -c 'import <module>'``: its whole import time, and the top-level
    packages whose own modules took the most of it (self times, so the parts add up)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    by_package: dict[str, float] = {}
    whole = 0.0
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        own, cumulative, name = line.removeprefix("import time:").split("|")
        name = name.strip()
        by_package[name.split(".")[0]] = by_package.get(name.split(".")[0], 0.0) + float(own)
        if name == module:
            whole = float(cumulative)
    return whole, sorted(((us, name) for name, us in by_package.items()), reverse=True)[:top]


def print_memory_diagnosis(env: dict[str, str], cwd: Path) -> None:
    print("  where the memory goes: RSS of one fresh interpreter importing what the daemon imports, step by step (MB)")
    for daemon, steps in IMPORT_STEPS.items():
        rows = [line.split(" ", 1) for line in python_lines(STEPWISE_RSS, env, cwd, *steps)]
        cells, previous = [], 0.0
        for value, label in rows:
            cells.append(f"{label} {float(value):.1f}" if not previous else f"{label} +{float(value) - previous:.1f}")
            previous = float(value)
        print(f"    {daemon:<9} {previous:6.1f}  = " + "; ".join(cells))
    rss, seconds = python_lines(EAGER_AIOGRAM, env, cwd)[0].split()
    print(
        f"    compare   a bare `import aiogram`, every type's validator built at import: {float(rss):.1f} MB in"
        f" {float(seconds):.2f} s (the bot defers those builds to first use: bot.lazy_types)"
    )
    for module in ("bot.app", "executor.server"):
        whole, ranked = import_times(module, env, cwd)
        listed = ", ".join(f"{name} {us / 1e3:,.0f}" for us, name in ranked)
        print(f"  python -X importtime -c 'import {module}': {whole / 1e3:,.0f} ms; own time by package (ms): {listed}")


# -- main -----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, work: Path) -> bool:
    key_path, pub_path = generate_key_pair(work / "keys", "bot")
    socket_path = work / "run" / "executor.sock"
    users = [FIRST_USER + i for i in range(WARMUP + args.updates + PROFILE_UPDATES)]
    child_users = [FIRST_USER + len(users) + i for i in range(CHILD_USERS)]
    env = clean_env()
    executor_env = {
        **env,
        "WINGMAN_EXECUTOR_NAME": EXECUTOR_NAME,
        "WINGMAN_DATA_DIR": str(work / "executor"),
        "WINGMAN_SOCKET": str(socket_path),
        "WINGMAN_TRUSTED_KEYS": str(pub_path),
        # Every benchmark user is a viewer: /whoami is answered "done", as for a team member.
        "WINGMAN_VIEWERS": ",".join(str(u) for u in users + child_users),
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }
    bot_env = {
        **env,
        "WINGMAN_DATA_DIR": str(work / "bot"),
        "WINGMAN_SOCKET": str(socket_path),
        "WINGMAN_BOT_KEY": str(key_path),
        "TELEGRAM_BOT_TOKEN": DEFAULT_TOKEN,
        "WINGMAN_CHAT_ID": str(TEAM_CHAT),
    }
    ok = True
    double = TelegramDouble(DEFAULT_TOKEN)
    await double.start()
    double.add_chat(TEAM_CHAT, chat_type="supergroup")  # where the bot posts the executor's notifications
    bot_env["TELEGRAM_API_BASE"] = double.base_url
    first_start = Child("executor", executor_env, work)
    executor = Child("executor", executor_env, work)
    bot = Child("bot", bot_env, work)
    try:
        # The executor's first start creates and migrates its database (Alembic loaded); the
        # one measured is the next, as every start after the installation's first.
        await first_start.start("executor listening on")
        await asyncio.sleep(args.settle)
        first_idle = proc_status(first_start.pid)
        await first_start.stop()
        # 2 first (the daemons fresh), then 1 against the same executor.
        await executor.start("executor listening on")
        await bot.start("bot started")
        await asyncio.sleep(args.settle)
        idle = {"executor": proc_status(executor.pid), "bot": proc_status(bot.pid)}

        sent_before = len(double.calls_to("sendMessage"))
        for user in child_users:
            double.send_text(user, "/whoami")
        await double.wait_for(lambda: len(double.calls_to("sendMessage")) - sent_before >= CHILD_USERS or None, timeout=60)
        await asyncio.sleep(1.0)
        bot_busy = proc_status(bot.pid)
        bot_code, bot_stop = await bot.stop()

        latency = await measure_latency(double, socket_path, key_path, work, args.updates, profile=False)
        executor_busy = proc_status(executor.pid)
        executor_code, executor_stop = await executor.stop()
    finally:
        await bot.stop()
        await executor.stop()
        await first_start.stop()
        await double.close()

    # -- 1
    to_request, signing = latency["to_request"], latency["signing"]
    p95 = percentile(to_request, 0.95) * 1e3
    n = len(to_request)
    print(f"1. update -> signed request leaves for the executor  ({n:,} /whoami, {WARMUP} warm-up, distinct users, {GAP * 1e3:g} ms apart)")
    print(f"  bot overhead    {ms(to_request, 0.5, 0.95, 0.99)}  max {max(to_request) * 1e3:.2f} ms   target p95 <= {TARGET_P95_MS:g} ms {mark(p95 <= TARGET_P95_MS)}")
    print(f"  floor           make_token alone, same key and inputs: {ms(signing, 0.5, 0.95)}")
    print(
        f"  ratio           overhead / floor: p50 {percentile(to_request, 0.5) / percentile(signing, 0.5):.1f}x"
        f"  p95 {percentile(to_request, 0.95) / percentile(signing, 0.95):.1f}x"
        f"   (aiogram dispatch + our middlewares/handler ~ p50 {(percentile(to_request, 0.5) - percentile(signing, 0.5)) * 1e6:.0f} us)"
    )
    print(f"  rest of update  executor round trip {ms(latency['executor'], 0.5, 0.95)};  reply sent to Telegram (double) {ms(latency['rest'], 0.5, 0.95)}")
    print(f"  before it       aiogram's polling turning one update's JSON into an Update: {ms(latency['parsing'], 0.5, 0.95)}")
    print(f"  reply seen      {latency['sample'][:90]!r}")
    missed_latency = p95 > TARGET_P95_MS

    # -- 2
    print(f"2. resident memory, idle  (after ready + {args.settle:g} s idle; python -m wingman <command> as children)")
    missed_memory = False
    for name, child in (("executor", executor), ("bot", bot)):
        rss = idle[name]["VmRSS"]
        missed_memory |= rss > TARGET_RSS_MB
        print(f"  {name:<9} pid {child.pid:<7} {rss_text(idle[name])}   target <= {TARGET_RSS_MB:g} MB {mark(rss <= TARGET_RSS_MB)}")
    print(f"  first start     executor creating and migrating its database (Alembic loaded): {rss_text(first_idle)}")
    print(f"  after use       bot after answering {CHILD_USERS} /whoami: {rss_text(bot_busy)}")
    print(f"                  executor after {WARMUP + n + CHILD_USERS:,} requests: {rss_text(executor_busy)}")
    print(f"  start-up        spawn -> ready: executor {executor.ready_after:.2f} s, bot {bot.ready_after:.2f} s")
    for name, code, seconds in (("bot", bot_code, bot_stop), ("executor", executor_code, executor_stop)):
        good = code == 0
        ok &= good
        print(f"  SIGTERM         {name}: exit {code if code is not None else 'none (killed)'} after {seconds:.2f} s {'ok' if good else 'FAILED'}")
        if not good:
            print(f"{name} log:\n{(bot if name == 'bot' else executor).log()}")
    for name, child in (("executor", executor), ("bot", bot)):
        notes = child.warnings()
        expected = [line for line in notes if EXPECTED_WARNING in line]
        if expected:
            print(f"  {name} logged, as expected with DOCKER_HOST pointing nowhere: {expected[0].split(': ', 1)[-1][:110]}")
        for line in [line for line in notes if EXPECTED_WARNING not in line][:3]:
            print(f"  {name} logged: {line[:200]}")

    if args.diagnose or missed_latency:
        print("diagnosis: the interval of 1")
        double = TelegramDouble(DEFAULT_TOKEN)
        await double.start()
        # A second executor for the profile, so the figures above come from one undisturbed run.
        executor_env["WINGMAN_DATA_DIR"] = str(work / "executor-profile")
        profiled = Child("executor", executor_env, work)
        try:
            await profiled.start("executor listening on")
            app = BotApp(bot_settings(double, socket_path, key_path, work / "bot-profile"))
            client = TimedClient(socket_path, load_signing_key(key_path), executor_name=EXECUTOR_NAME, timeout=30)
            try:
                for i in range(WARMUP):
                    await feed(app, client, double, FIRST_USER + i)
                print_profile(await profile_interval(app, client, double, FIRST_USER + WARMUP))
            finally:
                await client.close()
                await app.fleet.close()
                await app.bot.session.close()
        finally:
            await profiled.stop()
            await double.close()
    if args.diagnose or missed_memory:
        print("diagnosis: memory")
        print_memory_diagnosis(env, work)
    return ok


def process_age() -> float:
    """Seconds since this process started (its own imports included)."""
    start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    return float(Path("/proc/uptime").read_text().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=1_000, help="updates measured (default 1,000)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds idle before reading RSS (default 5)")
    parser.add_argument("--diagnose", action="store_true", help="also profile the interval and break the memory down")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s: %(message)s")

    print(f"bot benchmark  {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(
        f"machine        nproc {len(os.sched_getaffinity(0))} ({os.cpu_count()} CPUs), {platform.machine()},"
        f" {platform.system()} {platform.release()}; Python {platform.python_version()};"
        f" aiogram {aiogram.__version__}; aiohttp {aiohttp.__version__}"
    )
    print(f"load average   {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # Short: a Unix socket path holds at most 107 bytes.
    work = Path(tempfile.mkdtemp(prefix="wm-botbench-", dir="/tmp"))
    ok = False
    try:
        gc.collect()
        ok = asyncio.run(run(args, work))
    except BenchFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total          {process_age():.0f} s (this script's imports included); load average now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
