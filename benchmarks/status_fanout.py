"""``/status`` answered by the bot for 1, 2, 4 and 8 executors: the fan-out must not add up.

Run it from the repository root (the ``wingman`` package installed, e.g. ``pip install -e .``),
as a user who may reach the Docker engine::

    python benchmarks/status_fanout.py
    python benchmarks/status_fanout.py --updates 300 --rounds 4

Eight real executors, ``python -m wingman executor`` each in a child process with its own
SQLite database, name (``e1`` … ``e8``) and Unix socket, all on the host's Docker engine
(``/status`` lists its containers; the allowlist ``wmbench-*`` shows none, so the answer
stays one short line per host and the cost measured is the request, not the text). One bot
in this process: a ``bot.app.BotApp`` (not polling) whose dispatcher is fed each ``/status``
update from the Bot API test double, as its polling loop does; the time runs from
``feed_update`` until it returns, i.e. until every host answered and the one grouped reply
was posted to the double. Each update comes from a distinct user (the per-user rate limit
never interferes), in the team chat.

For N = 1, 2, 4, 8 executors (a fleet of ``e1`` … ``eN``) it prints p50 and p95 over
``--updates`` updates, taken in ``--rounds`` interleaved rounds so that the machine's drift
falls on every N alike, and beside each the single-executor figure of the same run; then
each executor alone (the slowest of the eight is what N = 8 should stay close to), and the
floor: one signed ``status`` request straight to ``e1`` with ``ExecutorClient``, no bot.

The concurrent fan-out (``bot.fleet.Fleet.each``) keeps the answer near the slowest single
executor's when the executors have cores of their own (other hosts, in production). Here all
eight share this machine's cores with the bot and the Docker engine, so what grows with N is
the machine's CPU, not the bot's waiting: the script prints the load average and the cores
beside the figures.

Beside each fleet size it prints the CPU one ``/status`` costs: the executors' together, the
Docker engine's (when its pid file is readable) and the bot's; on a machine with fewer cores
than that CPU needs in the time, the answer waits for cores, not for the bot.

This is a measurement, not a test: it exits non-zero only when something does not work (an
executor that does not start, a reply without every host's section).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.doubles.telegram, and the packages without an install

from aiogram.types import Update  # noqa: E402

from audit import generate_key_pair, load_signing_key  # noqa: E402
from bot.app import BotApp  # noqa: E402
from bot.settings import BotSettings  # noqa: E402
from executor.client import ExecutorClient, ExecutorUnreachable  # noqa: E402
from process.version import VERSION  # noqa: E402
from tests.doubles.telegram import DEFAULT_TOKEN, TelegramDouble  # noqa: E402

SIZES = (1, 2, 4, 8)
TEAM_CHAT = -1009999
FIRST_USER = 700_000
WARMUP = 10
START_DEADLINE = 60.0


class BenchFailure(Exception):
    pass


def clean_env() -> dict[str, str]:
    """This environment without Wingman's, Telegram's or Proxmox's settings (Docker's stays:
    the executors use the engine this user reaches)."""
    prefixes = ("WINGMAN_", "TELEGRAM_", "PROXMOX_", "RETENTION_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(values: list[float]) -> str:
    return f"p50 {percentile(values, 0.5) * 1e3:6.2f} ms, p95 {percentile(values, 0.95) * 1e3:6.2f} ms"


async def start_executors(work: Path, pub: Path, users: list[int]) -> tuple[list[subprocess.Popen[bytes]], dict[str, Path]]:
    sockets: dict[str, Path] = {}
    processes: list[subprocess.Popen[bytes]] = []
    for i in range(1, max(SIZES) + 1):
        name = f"e{i}"
        sockets[name] = work / "run" / f"{name}.sock"
        env = {
            **clean_env(),
            "WINGMAN_EXECUTOR_NAME": name,
            "WINGMAN_DATA_DIR": str(work / name),
            "WINGMAN_SOCKET": str(sockets[name]),
            "WINGMAN_TRUSTED_KEYS": str(pub),
            "WINGMAN_VIEWERS": ",".join(str(u) for u in users),
            "WINGMAN_CONTAINER_ALLOWLIST": "wmbench-*",
        }
        log = (work / f"{name}.log").open("wb")
        processes.append(
            subprocess.Popen([sys.executable, "-m", "wingman", "executor"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
        )
        log.close()
    key = load_signing_key(work / "keys" / "bot.key")
    for (name, path), process in zip(sockets.items(), processes):
        deadline = time.monotonic() + START_DEADLINE
        async with ExecutorClient(path, key, executor_name=name, timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise BenchFailure(f"executor {name} exited: {(work / f'{name}.log').read_text()[-800:]}")
                try:
                    if (await client.hello())["name"] == name:
                        break
                except ExecutorUnreachable:
                    pass
                if time.monotonic() > deadline:
                    raise BenchFailure(f"executor {name} did not answer within {START_DEADLINE:g} s")
                await asyncio.sleep(0.1)
    return processes, sockets


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (``/proc/<pid>/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def engine_pid() -> list[int]:
    """The Docker engine's pid, when this user may read it (its CPU is part of /status)."""
    try:
        return [int(Path("/var/run/docker.pid").read_text().strip())]
    except (OSError, ValueError):
        return []


class Users:
    def __init__(self) -> None:
        self.next = FIRST_USER

    def take(self) -> int:
        self.next += 1
        return self.next


async def status_once(app: BotApp, double: TelegramDouble, user: int, names: list[str]) -> float:
    """One /status through the bot's dispatcher; seconds until the grouped reply is posted."""
    double.send_text(user, "/status", chat_id=TEAM_CHAT)
    update = Update.model_validate(double.updates[-1], context={"bot": app.bot})
    sent = len(double.calls_to("sendMessage"))
    started = time.perf_counter()
    await app.dispatcher.feed_update(app.bot, update, fleet=app.fleet)
    elapsed = time.perf_counter() - started
    replies = double.calls_to("sendMessage")[sent:]
    text = str(replies[-1].params.get("text", "")) if replies else ""
    if not replies or "not answering" in text or (len(names) > 1 and not all(f"<b>{n}</b>" in text for n in names)):
        raise BenchFailure(f"/status with {names}: the reply was {text[:300]!r}")
    return elapsed


def bot_app(double: TelegramDouble, work: Path, sockets: dict[str, Path], names: list[str]) -> BotApp:
    settings = BotSettings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=work / "bot",
        telegram_bot_token=double.token,
        telegram_api_base=double.base_url,
        chat_id=TEAM_CHAT,
        bot_key=work / "keys" / "bot.key",
        executors={name: sockets[name] for name in names},
    )
    return BotApp(settings)


async def run(args: argparse.Namespace, work: Path) -> None:
    generate_key_pair(work / "keys", "bot")
    per_round = max(1, args.updates // args.rounds)
    total = WARMUP * len(SIZES) + per_round * args.rounds * len(SIZES) + 9 * (WARMUP + args.alone) + 10
    users = [FIRST_USER + 1 + i for i in range(total)]
    processes, sockets = await start_executors(work, work / "keys" / "bot.pub", users)
    double = await TelegramDouble(DEFAULT_TOKEN).start()
    double.add_chat(TEAM_CHAT, chat_type="supergroup", title="ops")
    who = Users()
    apps: dict[int, BotApp] = {}
    try:
        for size in SIZES:
            names = [f"e{i}" for i in range(1, size + 1)]
            apps[size] = bot_app(double, work, sockets, names)
            for _ in range(WARMUP):
                await status_once(apps[size], double, who.take(), names)
        figures: dict[int, list[float]] = {size: [] for size in SIZES}
        # CPU seconds spent per fleet size: (the executors, the Docker engine, this process).
        cpu: dict[int, list[float]] = {size: [0.0, 0.0, 0.0] for size in SIZES}
        pids, engine = [p.pid for p in processes], engine_pid()
        for _ in range(args.rounds):
            for size in SIZES:
                names = [f"e{i}" for i in range(1, size + 1)]
                before = (cpu_seconds(pids), cpu_seconds(engine), time.process_time())
                for _ in range(per_round):
                    figures[size].append(await status_once(apps[size], double, who.take(), names))
                    await asyncio.sleep(0.002)
                after = (cpu_seconds(pids), cpu_seconds(engine), time.process_time())
                for i in range(3):
                    cpu[size][i] += after[i] - before[i]

        alone: dict[str, list[float]] = {}
        for name in sockets:
            app = bot_app(double, work, sockets, [name])
            try:
                for _ in range(WARMUP):
                    await status_once(app, double, who.take(), [name])
                alone[name] = [await status_once(app, double, who.take(), [name]) for _ in range(args.alone)]
            finally:
                await app.stop()

        key = load_signing_key(work / "keys" / "bot.key")
        floor: list[float] = []
        async with ExecutorClient(sockets["e1"], key, executor_name="e1", timeout=10) as client:
            for i in range(WARMUP + args.alone):
                started = time.perf_counter()
                reply = await client.call(who.take(), "status", {}, {"chat_id": TEAM_CHAT, "private": False, "message_id": 1})
                if reply.status != "done":
                    raise BenchFailure(f"status straight to e1: {reply}")
                if i >= WARMUP:
                    floor.append(time.perf_counter() - started)
    finally:
        for app in apps.values():
            await app.stop()
        await double.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()

    single = figures[1]
    slowest = max(alone, key=lambda name: percentile(alone[name], 0.5))
    print(
        f"/status through the bot, {dt.date.today().isoformat()}; {os.cpu_count()} cores, {platform.machine()}, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()}; wingman {VERSION}; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"  {len(single)} updates per fleet size, {args.rounds} interleaved rounds; each executor on this machine")
    for size in SIZES:
        values = figures[size]
        ratio = statistics.median(values) / statistics.median(single)
        print(f"  {size} executor{'s' if size > 1 else ' '}: {ms(values)}   (1 executor: {ms(single)}; p50 x{ratio:.2f})")
        spent = [c / len(values) * 1e3 for c in cpu[size]]
        engine_text = f", Docker engine {spent[1]:.1f}" if engine_pid() else ""
        print(f"      CPU per /status: executors {spent[0]:.1f} ms{engine_text}, the bot {spent[2]:.1f} ms")
    print(f"  each executor alone ({args.alone} updates each): " + ", ".join(f"{n} p50 {percentile(v, 0.5) * 1e3:.2f}" for n, v in alone.items()) + " ms")
    print(f"  slowest alone: {slowest}, {ms(alone[slowest])}; 8 executors p50 x{statistics.median(figures[8]) / statistics.median(alone[slowest]):.2f} of it")
    for size in SIZES[1:]:
        one_by_one = sum(percentile(alone[f"e{i}"], 0.5) for i in range(1, size + 1))
        print(
            f"  {size} executors asked one after the other would take the sum of their p50s alone, {one_by_one * 1e3:.2f} ms;"
            f" at once: p50 {percentile(figures[size], 0.5) * 1e3:.2f} ms"
        )
    print(f"  floor: one signed status request straight to e1, no bot: {ms(floor)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--updates", type=int, default=200, help="/status updates per fleet size (default 200)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds (default 4)")
    parser.add_argument("--alone", type=int, default=40, help="updates for each executor alone (default 40)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wm-fan-", dir="/tmp"))
    try:
        asyncio.run(run(args, work))
    except BenchFailure as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
