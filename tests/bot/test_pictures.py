"""The weekly report as one picture: the PNG decodes at its size, the caption carries the
same figures, a quiet week is one line, and matplotlib is loaded only to draw.

The figures are the executor's own (``scheduler.weekly`` over the seeded week of
tests/scheduler/test_reports.py); the end-to-end tests run the real weekly job in a real
executor and watch the real bot post through the Bot API double.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from PIL import Image

import pytest

from bot.pictures import HEIGHT, WIDTH, PictureFailed, Week, caption, draw, is_quiet, quiet_text, render
from scheduler.reports import collect
from scheduler.weekly import WeeklyTally
from tests.bot.conftest import TEAM, World
from tests.scheduler.test_reports import SINCE, UNTIL, seeded_week
from datetime import timezone

REPO = Path(__file__).resolve().parents[2]


def seeded(host: str = "home") -> Week:
    entries = seeded_week()
    tally = WeeklyTally(SINCE, UNTIL, timezone.utc)
    for entry in entries:
        tally.add(entry)
    figures = tally.figures(collect(entries, SINCE, UNTIL, title="Weekly").approvals, "🔗 Chain: ✅ verified intact")
    return Week.from_json(figures, host)


def decoded(png: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(png))
    image.load()  # every byte decoded, not only the header
    assert image.format == "PNG"
    return image.size


def test_the_week_is_drawn_as_a_png_of_the_expected_size() -> None:
    assert decoded(draw([seeded()])) == (WIDTH, HEIGHT)


def test_the_caption_carries_the_figures_in_text() -> None:
    text = caption([seeded()])
    assert text.splitlines() == [
        "📊 Weekly report · 03-02 → 03-09 (UTC)",
        "Requests: 6 done · 5 refused · 0 failed · 1 rolled back",
        "Per day (done/refused/failed/rolled back): Mon 02 2/0/0/0 · Tue 03 2/0/0/0 · Wed 04 0/3/0/0 · Thu 05 0/1/0/0"
        " · Fri 06 0/1/0/1 · Sat 07 1/0/0/0 · Sun 08 0/0/0/0 · Mon 09 1/0/0/0",
        "Deploys: home 3, 2 rolled back",
        "Median wait for approval: 26m (2 approvals; Mon 02 40m · Tue 03 12m)",
        "🔗 Chain: ✅ verified intact",
    ]
    assert len(text) <= 1024


def test_several_hosts_share_one_picture_and_their_waits_merge_exactly() -> None:
    weeks = [seeded("home"), seeded("nas")]
    assert decoded(draw(weeks)) == (WIDTH, HEIGHT)
    text = caption(weeks)
    assert "Requests: 12 done · 10 refused · 0 failed · 2 rolled back" in text
    assert "Deploys: home 3, 2 rolled back · nas 3, 2 rolled back" in text
    assert "Median wait for approval: 26m (4 approvals; Mon 02 40m · Tue 03 12m)" in text
    assert "home: 🔗 Chain" in text and "nas: 🔗 Chain" in text


def test_a_quiet_week_is_said_not_drawn() -> None:
    empty = {"since": "2026-03-02T08:00:00Z", "until": "2026-03-09T08:00:00Z", "timezone": "UTC", "chain": "🔗 Chain: ✅",
             "days": [{"date": f"2026-03-0{n}"} for n in range(2, 10)]}  # fmt: skip
    week = Week.from_json(empty, "home")
    assert is_quiet([week]) and not is_quiet([seeded()])
    assert quiet_text([week]).splitlines()[1] == "A quiet week: no requests, no deploys, no approvals."


def test_figures_of_the_wrong_shape_are_refused() -> None:
    for bad in ({}, {"days": "7"}, {"days": [{"date": "2026-03-02", "done": -1}]}, {"days": [{"date": "x"}]},
                {"days": [{"date": "2026-03-02", "approval_waits": [True]}]}):  # fmt: skip
        try:
            Week.from_json(bad, "home")
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_matplotlib_is_loaded_by_neither_process_idle_nor_by_the_bot_when_it_draws() -> None:
    code = (
        "import asyncio, io, sys, bot.app, bot.notifications, bot.pictures, executor.server, scheduler.jobs, wingman.cli\n"
        "print('matplotlib' in sys.modules)\n"
        "import bot.pictures as p, scheduler.weekly\n"
        "week = p.Week.from_json({'days': [{'date': '2026-03-02', 'done': 1}]}, 'home')\n"
        "png = asyncio.run(p.render([week]))\n"  # in a child: the bot never loads it
        "print('matplotlib' in sys.modules, png[:4] == b'\\x89PNG')\n"
        "p.draw([week])\n"
        "print('matplotlib' in sys.modules)\n"  # the check itself can see it loaded
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False", "True", "True"]


async def test_a_drawing_that_takes_too_long_is_a_one_line_failure() -> None:
    with pytest.raises(PictureFailed, match="drawing took longer than 0 s"):
        await render([seeded()], timeout=0.01)
    assert decoded(await render([seeded()])) == (WIDTH, HEIGHT)  # the child draws what draw() draws


# -- end to end: the real weekly job, the real bot, the double ------------------------------------


async def weekly_message(world: World) -> Any:
    assert world.harness.daemon is not None and world.harness.daemon.scheduler is not None
    assert await world.harness.daemon.scheduler.run_job("weekly-report") is not None
    return await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if m.from_bot and "Weekly report" in m.text), None),
        timeout=60,
        what="the weekly report",
    )


async def test_the_weekly_report_arrives_as_one_photo_with_its_caption(make_world: Callable[..., Awaitable[World]]) -> None:
    world = await make_world()
    audit = world.harness.executor.audit
    await audit.append(actor="tg:4", action="status", decision="executed", target="web")
    await audit.append(actor="tg:4", action="restart", decision="executed", target="web")
    await audit.append(actor="tg:666", action="restart", decision="denied", target="web", outcome="you are not a known user")
    await audit.append(
        actor="tg:4", action="deploy", decision="failed", target="web",
        outcome="deploy of web to app:3 failed: unhealthy; rolled back to app:2, running",
    )  # fmt: skip
    message = await weekly_message(world)
    assert message.kind == "photo" and message.file is not None
    assert decoded(message.file.data) == (WIDTH, HEIGHT)
    lines = message.text.splitlines()
    assert lines[1] == "Requests: 2 done · 1 refused · 0 failed · 1 rolled back"
    assert lines[3] == "Deploys: this host 1, 1 rolled back"
    assert lines[4] == "Median wait for approval: no approvals"
    today = time.strftime("%a %d", time.localtime())
    assert f"{today} 2/1/0/1" in lines[2]
    assert len([m for m in world.double.chat(TEAM) if m.from_bot and "Weekly report" in m.text]) == 1


async def test_a_quiet_week_arrives_as_one_line_not_a_picture(make_world: Callable[..., Awaitable[World]]) -> None:
    world = await make_world()
    message = await weekly_message(world)
    assert message.kind == "text"
    assert "A quiet week: no requests, no deploys, no approvals." in message.text


async def test_many_hosts_share_one_weekly_picture_edited_in_place(
    make_harness: Callable[..., Awaitable[Any]], tmp_path: Path, socket_dir: Path
) -> None:
    from bot.app import BotApp
    from bot.settings import BotSettings
    from tests.doubles.telegram import DEFAULT_TOKEN, TelegramDouble

    no_docker = "unix:///nonexistent/docker.sock"
    home = await make_harness(executor_name="home", docker_host=no_docker)
    nas = await make_harness(executor_name="nas", data_dir=tmp_path / "nas-data", socket=socket_dir / "nas.sock", docker_host=no_docker)
    await home.executor.audit.append(actor="tg:4", action="status", decision="executed", target="web")
    await home.executor.audit.append(
        actor="tg:4", action="deploy", decision="failed", target="web",
        outcome="deploy of web to app:3 failed: unhealthy; rolled back to app:2, running",
    )  # fmt: skip
    await nas.executor.audit.append(actor="tg:4", action="deploy", decision="executed", target="db")
    double = await TelegramDouble(DEFAULT_TOKEN).start()
    double.add_chat(TEAM, chat_type="supergroup", title="ops")
    settings = BotSettings(
        _env_file=None, telegram_bot_token=double.token, telegram_api_base=double.base_url, chat_id=TEAM,
        bot_key=home.home / "keys" / "bot.key", executors=f"home={home.settings.socket_path},nas={nas.settings.socket_path}",
    )  # fmt: skip
    app = BotApp(settings)
    await app.start()
    try:
        weekly = lambda: [m for m in double.chat(TEAM) if m.from_bot and "Weekly report" in m.text]  # noqa: E731
        assert await home.daemon.scheduler.run_job("weekly-report") is not None
        [first] = await double.wait_for(weekly, timeout=60, what="home's weekly picture")
        assert first.kind == "photo" and "Deploys: home 1, 1 rolled back" in first.text
        assert await nas.daemon.scheduler.run_job("weekly-report") is not None
        both = await double.wait_for(
            lambda: next((m for m in weekly() if "nas" in m.text), None), timeout=60, what="the picture with both hosts"
        )
        assert [m.message_id for m in weekly()] == [first.message_id]  # one message, edited
        assert both.message_id == first.message_id and len(both.history) == 1
        lines = both.text.splitlines()
        assert lines[0].endswith(" · home, nas")
        assert lines[1] == "Requests: 2 done · 0 refused · 0 failed · 1 rolled back"
        assert lines[3] == "Deploys: home 1, 1 rolled back · nas 1, 0 rolled back"
        assert both.file is not None and decoded(both.file.data) == (WIDTH, HEIGHT)
    finally:
        await app.stop()
        await double.close()
