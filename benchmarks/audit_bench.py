"""Throughput of Wingman's audit chain: hashing floor, verification, appends.

Run it from the repository root (the ``wingman`` package installed, e.g. ``pip install -e .``)::

    python benchmarks/audit_bench.py
    python benchmarks/audit_bench.py --entries 200000 --pg-url postgresql://user:pw@host:5432/db

It prints, each figure beside its target:

1. **floor** - the canonical entry object (``audit.canonical.entry_object`` from params that
   are already canonical JSON) plus its SHA-256 chain hash (``chain_hash``), in memory, for
   realistic entries: the reference cost of hashing the chain through the public functions,
   which verification (fetching rows as well) should stay within ~1.5x of.
2. **verify (SQLite)** - ``audit.verify_chain`` over a chain of ``--entries`` entries
   (default 1,000,000; target >= 150,000 entries/s, i.e. within ~1.5x of the floor) and the
   peak extra memory it takes (target < 50 MB). The chain is built fast: ``AuditStore.open``
   creates the schema, then the rows are hashed here and bulk-inserted with ``sqlite3`` in
   one transaction and ``audit_head`` is set to the last entry. Verification runs in a child
   process (this script with a hidden flag), ``--verify-runs`` times (best rate shown), so
   its memory is measured alone: peak RSS minus the RSS just before ``verify_chain`` starts
   (after imports and opening the store). The peak is ``VmHWM`` from ``/proc/self/status``
   (reset just before verifying), not ``ru_maxrss``, which on Linux a child inherits from
   its parent across fork + exec (the parent holds hundreds of MB after the build); off
   Linux it falls back to ``ru_maxrss``. The run fails loudly unless every report is ok
   and covers every entry.
3. **append** - ``AuditStore.append`` with 1 writer (2,000 entries) and with 64 concurrent
   writers (20,000 entries, each writer awaiting its own appends in turn), on SQLite (target
   >= 5,000 entries/s at 64) and on PostgreSQL (target >= 2,000 entries/s at 64). Appends are
   durable when they return (SQLite WAL + ``synchronous=FULL``; PostgreSQL synchronous
   commit), so these figures depend on the disk's fsync latency; concurrent appends share
   transactions (group commit), shown as the mean entries per transaction.

PostgreSQL: ``--pg-url`` (default ``$WINGMAN_TEST_PG_URL`` or
``postgresql://wingman:wingman@127.0.0.1:5432/wingman_test``) is an admin connection whose
role may create databases; a scratch database ``wingman_bench_<random>`` is created and
dropped. If the server cannot be reached the PostgreSQL figures are skipped, saying why.

Everything else happens in a temporary directory (``--tmpdir`` to choose where; appends
should be measured on the disk the service uses), removed at the end. This is a
measurement, not a test: it exits non-zero only when a chain fails to verify. Figures
move with other load on the machine (the load average is printed at the top).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import random
import resource
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import audit
from audit.canonical import GENESIS_HASH, canonical_json, chain_hash, entry_object

DEFAULT_PG_URL = "postgresql://wingman:wingman@127.0.0.1:5432/wingman_test"

FLOOR_ENTRIES = 200_000
FLOOR_ROUNDS = 3
APPEND_RUNS = ((1, 2_000), (64, 20_000))
APPEND_WARMUP = 20

TARGET_VERIFY_RATE = 150_000
TARGET_VERIFY_MEMORY_MB = 50
TARGET_APPEND_64 = {"sqlite": 5_000, "postgresql": 2_000}

MB = 1024 * 1024


# -- realistic entries -------------------------------------------------------------------------

_ACTORS = ("tg:184467251", "tg:902113377", "tg:55120934", "system", "scheduler")
_CONTAINERS = ("web-1", "web-2", "api", "worker-3", "postgres", "redis", "traefik", "grafana")
_NODES = ("pve-1", "pve-2", "pve-3")


def _make_template(rng: random.Random) -> dict[str, Any]:
    """One entry's fields (without ts/request_id), params as a dict."""
    actor = rng.choice(_ACTORS)
    container = rng.choice(_CONTAINERS)
    node = rng.choice(_NODES)
    vmid = rng.randrange(100, 140)
    kind = rng.randrange(8)
    if kind == 0:
        return dict(
            actor=actor, action="docker.restart", decision="allow", target=f"docker:{container}",
            params={"container": container, "host": "docker-1", "timeout": 10}, outcome="ok",
        )
    if kind == 1:
        return dict(
            actor=actor, action="docker.logs", decision="allow", target=f"docker:{container}",
            params={"container": container, "tail": rng.choice((50, 100, 500)), "since": "10m"},
            outcome=f"sent {rng.randrange(1, 500)} lines",
        )
    if kind == 2:
        return dict(
            actor=actor, action="proxmox.vm.start", decision="approved", target=f"pve:{node}/{vmid}",
            params={"node": node, "vmid": vmid, "reason": "maintenance window ended", "approver": "tg:902113377"},
            outcome="ok",
        )
    if kind == 3:
        return dict(
            actor=actor, action="approval.request", decision="pending", target=f"pve:{node}/{vmid}",
            params={
                "command": f"/stop {vmid}", "requested_by": actor, "ttl_s": 300,
                "approvers": ["tg:902113377", "tg:55120934"],
            },
            outcome=None,
        )
    if kind == 4:
        return dict(
            actor=actor, action="policy.check", decision="deny", target=f"docker:{container}",
            params={
                "command": f"/exec {container} rm -rf /var/lib/data", "rule": "deny-exec-prod",
                "args": [container, "rm", "-rf", "/var/lib/data"],
            },
            outcome="refused by policy",
        )
    if kind == 5:
        return dict(
            actor="scheduler", action="scheduler.run", decision="done", target=None,
            params={
                "job": "nightly-backup", "next_run": "2026-11-23T02:00:00Z", "duration_ms": rng.randrange(1000, 90000),
            },
            outcome="ok",
        )
    if kind == 6:  # non-ASCII text, stored literally as UTF-8
        return dict(
            actor=actor, action="docker.restart", decision="allow", target=f"docker:{container}",
            params={"container": container, "comment": "Перезапуск после обновления ✓ — ok"}, outcome="ok",
        )
    # escapes: quotes, backslashes, newlines
    return dict(
        actor=actor, action="docker.exec", decision="approved", target=f"docker:{container}",
        params={
            "cmd": ["sh", "-c", 'echo "ready" && ls C:\\tmp'], "stderr": 'Error: "bind" failed\nretrying\tin 5s',
            "exit_code": 1,
        },
        outcome="exit 1",
    )


def make_templates(count: int = 1_000, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [_make_template(rng) for _ in range(count)]


def _ts_stream(start: dt.datetime) -> Iterator[str]:
    """Increasing canonical timestamps, ~20 entries per second (cheap: one strftime per second)."""
    second = start.replace(microsecond=0)
    while True:
        prefix = second.strftime("%Y-%m-%dT%H:%M:%S.")
        for k in range(20):
            yield f"{prefix}{k * 50_000 + 1_234:06d}Z"
        second += dt.timedelta(seconds=1)


def entry_inputs(n: int, templates: list[dict[str, Any]]) -> Iterator[tuple[Any, ...]]:
    """``n`` entries as (ts, actor, action, target, params_json, decision, outcome, request_id)."""
    canonical = [
        (t["actor"], t["action"], t["target"], canonical_json(t["params"]), t["decision"], t["outcome"])
        for t in templates
    ]
    timestamps = _ts_stream(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    base = random.Random(7).getrandbits(128)
    count = len(canonical)
    for i in range(n):
        actor, action, target, params_json, decision, outcome = canonical[i % count]
        request_id = None if i % 5 == 4 else f"{(base + i * 0x9E3779B97F4A7C15) & ((1 << 128) - 1):032x}"
        yield next(timestamps), actor, action, target, params_json, decision, outcome, request_id


# -- helpers -----------------------------------------------------------------------------------


def fmt(n: float) -> str:
    return f"{n:,.0f}"


def mark(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    kib = _proc_status_kib("VmRSS")
    return kib * 1024 if kib is not None else peak_rss_bytes()


def reset_peak_rss() -> bool:
    """Set this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS of this process image.

    ``ru_maxrss`` is the preferred source, but on Linux it carries over from the parent
    through fork/vfork + exec (a child started by a parent holding 400 MB reports >= 400 MB),
    so where ``/proc/self/status`` exists its ``VmHWM`` (this image's own high-water mark,
    the same counter ``ru_maxrss`` takes its maximum from) is used.
    """
    kib = _proc_status_kib("VmHWM")
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kib * 1024


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class BenchFailure(Exception):
    pass


# -- 1. the floor ------------------------------------------------------------------------------


def measure_floor(templates: list[dict[str, Any]]) -> tuple[float, float]:
    """Best entries/s over a few rounds, and the mean entry object size in bytes."""
    inputs = list(entry_inputs(FLOOR_ENTRIES, templates))
    size = statistics.fmean(
        len(entry_object(ts=ts, actor=a, action=ac, target=t, params_json=p, decision=d, outcome=o, request_id=r).encode())
        for ts, a, ac, t, p, d, o, r in inputs[:10_000]
    )
    best = 0.0
    for _ in range(FLOOR_ROUNDS):
        prev = GENESIS_HASH
        started = time.perf_counter()
        for seq, (ts, actor, action, target, params_json, decision, outcome, request_id) in enumerate(inputs, 1):
            text = entry_object(
                ts=ts, actor=actor, action=action, target=target, params_json=params_json,
                decision=decision, outcome=outcome, request_id=request_id,
            )
            prev = chain_hash(seq, prev, text)
        best = max(best, len(inputs) / (time.perf_counter() - started))
    return best, size


# -- 2. verification ---------------------------------------------------------------------------

_INSERT = (
    "INSERT INTO audit_log (seq, ts, actor, action, target, params, decision, outcome, request_id, prev_hash, entry_hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _chain_rows(n: int, templates: list[dict[str, Any]], last: list[Any]) -> Iterator[tuple[Any, ...]]:
    prev = GENESIS_HASH
    seq = 0
    for seq, (ts, actor, action, target, params_json, decision, outcome, request_id) in enumerate(
        entry_inputs(n, templates), 1
    ):
        entry_hash = chain_hash(
            seq,
            prev,
            entry_object(
                ts=ts, actor=actor, action=action, target=target, params_json=params_json,
                decision=decision, outcome=outcome, request_id=request_id,
            ),
        )
        yield seq, ts, actor, action, target, params_json, decision, outcome, request_id, prev, entry_hash
        prev = entry_hash
    last[:] = [seq, prev]


async def _create_schema(url: str) -> None:
    store = await audit.AuditStore.open(url)
    await store.close()


def build_sqlite_chain(path: Path, n: int, templates: list[dict[str, Any]]) -> float:
    """A valid ``n``-entry chain in a new database at ``path``; returns the seconds it took."""
    started = time.perf_counter()
    asyncio.run(_create_schema(sqlite_url(path)))  # the migrations make the tables
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous = OFF")  # a scratch build; durability is not measured here
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB, for the random-order unique index
        last: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT, _chain_rows(n, templates, last))
        conn.execute("UPDATE audit_head SET seq = ?, entry_hash = ? WHERE id = 1", last)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - started


async def _verify_child(path: Path) -> dict[str, Any]:
    store = await audit.AuditStore.open(sqlite_url(path), migrate=False)
    try:
        gc.collect()
        reset_peak_rss()
        rss_before = current_rss_bytes()
        started = time.perf_counter()
        report = await audit.verify_chain(store, None, {})
        seconds = time.perf_counter() - started
        peak = peak_rss_bytes()
    finally:
        await store.close()
    return {
        "ok": report.ok,
        "entries": report.entries,
        "summary": report.summary(),
        "seconds": seconds,
        "rss_before": rss_before,
        "peak_rss": peak,
    }


def verify_in_child(path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--verify-child", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchFailure(f"the verify child failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- 3. appends --------------------------------------------------------------------------------


async def _append_run(store: audit.AuditStore, writers: int, total: int, templates: list[dict[str, Any]]) -> dict[str, Any]:
    latencies: list[float] = []
    timestamps: set[str] = set()

    async def writer(index: int, count: int) -> None:
        for k in range(count):
            t = templates[(index * 7919 + k) % len(templates)]
            began = time.perf_counter()
            entry = await store.append(
                actor=t["actor"], action=t["action"], decision=t["decision"], target=t["target"],
                params=t["params"], outcome=t["outcome"], request_id=f"{index:04d}-{k:08d}",
            )
            latencies.append(time.perf_counter() - began)
            timestamps.add(entry.ts)  # one ts per transaction (a batch shares it)

    shares = [total // writers + (1 if i < total % writers else 0) for i in range(writers)]
    started = time.perf_counter()
    await asyncio.gather(*(writer(i, c) for i, c in enumerate(shares)))
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "writers": writers,
        "entries": total,
        "rate": total / seconds,
        "per_tx": total / max(len(timestamps), 1),
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def bench_appends(url: str, templates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    store = await audit.AuditStore.open(url)
    try:
        for k in range(APPEND_WARMUP):  # connections, the writer task, statement caches
            await store.append(actor="system", action="bench.warmup", decision="done", params={"k": k})
        results = [await _append_run(store, writers, total, templates) for writers, total in APPEND_RUNS]
        expected = APPEND_WARMUP + sum(total for _, total in APPEND_RUNS)
        report = await audit.verify_chain(store, None, {})
        if not report.ok or report.entries != expected:
            raise BenchFailure(f"the appended chain does not verify ({expected} expected): {report.summary()}")
    finally:
        await store.close()
    return results


def print_appends(backend: str, label: str, results: list[dict[str, Any]]) -> None:
    for r in results:
        target = TARGET_APPEND_64[backend] if r["writers"] == 64 else None
        goal = f"  target >= {fmt(target)}/s {mark(r['rate'] >= target)}" if target else ""
        print(
            f"append  {label:<10} {r['writers']:>2} writer{'s' if r['writers'] > 1 else ' '} {fmt(r['entries']):>7} entries "
            f"{fmt(r['rate']):>8}/s  ({r['per_tx']:.1f} entries/transaction, latency p50 {r['p50_ms']:.1f} ms "
            f"p99 {r['p99_ms']:.1f} ms){goal}"
        )


# -- PostgreSQL scratch database ---------------------------------------------------------------


def _pg_admin_dsn(url: str) -> tuple[str, Any]:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    plain = parsed.set(drivername="postgresql")
    return plain.render_as_string(hide_password=False), parsed


async def pg_appends(admin_url: str, templates: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]] | None, str]:
    """(where, results or None, why skipped)."""
    import asyncpg

    dsn, parsed = _pg_admin_dsn(admin_url)
    where = parsed.set(drivername="postgresql").render_as_string(hide_password=True)
    try:
        admin = await asyncpg.connect(dsn, timeout=5)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return where, None, f"cannot connect to {where}: {type(exc).__name__}: {exc}"
    name = f"wingman_bench_{secrets.token_hex(4)}"
    try:
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.PostgresError as exc:
            return where, None, f"cannot create a scratch database on {where}: {exc}"
        try:
            url = parsed.set(drivername="postgresql+asyncpg", database=name)
            return where, await bench_appends(url.render_as_string(hide_password=False), templates), ""
        except audit.StoreUnavailable as exc:
            return where, None, f"the scratch database on {where} is unusable: {exc}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


# -- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="chain length for the verify figure (default 1,000,000)")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("WINGMAN_TEST_PG_URL") or DEFAULT_PG_URL,
        help="PostgreSQL admin URL (default $WINGMAN_TEST_PG_URL or %(default)s)",
    )
    parser.add_argument("--verify-runs", type=int, default=2, help="verifications, each in a fresh child (default 2; best shown)")
    parser.add_argument("--tmpdir", default=None, help="where the scratch SQLite files go (default: the system temp dir)")
    parser.add_argument("--verify-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.entries < 1:
        parser.error("--entries must be at least 1")

    if args.verify_child is not None:
        print(json.dumps(asyncio.run(_verify_child(args.verify_child))))
        return 0

    begun = time.perf_counter()
    print(f"audit benchmark  {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
    print(
        f"machine          {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.machine()}, "
        f"{platform.system()} {platform.release()}; Python {platform.python_version()} ({platform.python_implementation()}); "
        f"SQLite {sqlite3.sqlite_version}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    templates = make_templates()

    floor, size = measure_floor(templates)
    print(
        f"floor   in memory  {fmt(FLOOR_ENTRIES):>9} entries  {fmt(floor):>8}/s  "
        f"(entry_object + chain_hash, best of {FLOOR_ROUNDS}; mean entry object {size:.0f} bytes)"
    )

    failed = False
    work = Path(tempfile.mkdtemp(prefix="wingman-audit-bench-", dir=args.tmpdir))
    try:
        print(f"scratch          {work}")
        db = work / "verify.db"
        build_seconds = build_sqlite_chain(db, args.entries, templates)
        print(
            f"build   sqlite     {fmt(args.entries):>9} entries  {fmt(args.entries / build_seconds):>8}/s  "
            f"(hashed here + sqlite3 executemany, not a Wingman path; database {db.stat().st_size / MB:,.0f} MB)"
        )
        runs = []
        for _ in range(max(args.verify_runs, 1)):
            child = verify_in_child(db)
            if not child["ok"] or child["entries"] != args.entries:
                raise BenchFailure(f"verification of the {args.entries:,}-entry chain failed: {child['summary']}")
            runs.append(child)
        child = min(runs, key=lambda r: r["seconds"])
        rate = args.entries / child["seconds"]
        extra = max(max(r["peak_rss"] - r["rss_before"], 0) for r in runs) / MB
        if len(runs) > 1:
            each = ", ".join(f"{fmt(args.entries / r['seconds'])}/s" for r in runs)
            print(f"verify  runs       {each} (each in a fresh child; best below, memory the largest)")
        print(
            f"verify  sqlite     {fmt(args.entries):>9} entries  {fmt(rate):>8}/s  "
            f"(floor {fmt(floor)}/s, ratio {floor / rate:.2f}, "
            f"target >= {fmt(TARGET_VERIFY_RATE)}/s {mark(rate >= TARGET_VERIFY_RATE)})  "
            f"peak extra memory {extra:.1f} MB (target < {TARGET_VERIFY_MEMORY_MB} MB "
            f"{mark(extra < TARGET_VERIFY_MEMORY_MB)}; RSS before {child['rss_before'] / MB:.0f} MB)"
        )
        db.unlink()

        results = asyncio.run(bench_appends(sqlite_url(work / "append.db"), templates))
        print_appends("sqlite", "sqlite", results)

        where, pg_results, why = asyncio.run(pg_appends(args.pg_url, templates))
        if pg_results is None:
            print(f"append  postgresql skipped: {why}")
        else:
            print(f"postgresql       {where} (scratch database created and dropped)")
            print_appends("postgresql", "postgresql", pg_results)
    except BenchFailure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        failed = True
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total   {time.perf_counter() - begun:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
