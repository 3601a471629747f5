"""Each executor knows its name, and a token is good for the one executor it names.

Two real executors ("a" and "b", each with its own database and socket) and one bot key
trusted by both: a token signed for a is refused by b, audited on b, and runs nothing
there; the client learns an executor's name from its health answer when not told it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from executor.client import ExecutorClient, ExecutorUnreachable
from executor.protocol import audience_for, executor_name_problem, make_token, name_from_host
from executor.settings import ExecutorSettings
from process.settings import SettingsError, load_settings
from process.version import VERSION
from tests.harness import ADMIN, Harness

MakeHarness = Callable[..., Awaitable[Harness]]
NO_DOCKER = "unix:///nonexistent/docker.sock"


async def two_executors(make_harness: MakeHarness, tmp_path: Path, socket_dir: Path) -> tuple[Harness, Harness]:
    a = await make_harness(executor_name="a", docker_host=NO_DOCKER)
    b = await make_harness(
        executor_name="b", data_dir=tmp_path / "b-data", socket=socket_dir / "b.sock", docker_host=NO_DOCKER
    )
    return a, b


async def test_a_token_meant_for_a_is_refused_and_audited_on_b(
    make_harness: MakeHarness, tmp_path: Path, socket_dir: Path
) -> None:
    a, b = await two_executors(make_harness, tmp_path, socket_dir)
    meant_for_a = make_token(a.bot_key, audience=audience_for("a"), user_id=ADMIN, action="whoami")
    before_a = (await a.executor.audit.head()).seq

    reply = await b.client().send_token(meant_for_a)

    assert (reply.http_status, reply.status) == (401, "refused")
    assert reply.reason == "the token is meant for executor 'a', not for this one ('b')"
    entries = [e for e in await b.executor.audit.tail(5) if e.request_id == reply.request_id]
    assert [(e.actor, e.action, e.decision, e.outcome) for e in entries] == [
        ("unverified", "request", "refused", reply.reason)
    ]
    assert not any(e.decision == "executed" for e in await b.executor.audit.tail(5))
    # a saw nothing of it, and the same token, never used on a, is still good there.
    assert (await a.executor.audit.head()).seq == before_a
    assert (await a.client().send_token(meant_for_a)).status == "done"


async def test_a_token_of_a_bot_older_than_the_executor_is_refused_saying_so(harness: Harness) -> None:
    old = make_token(harness.bot_key, audience="wingman-executor", user_id=ADMIN, action="whoami")
    reply = await harness.client().send_token(old)
    assert (reply.http_status, reply.status) == (401, "refused")
    assert "upgrade the bot with the executor" in reply.reason and "'local'" in reply.reason
    entries = [e for e in await harness.executor.audit.tail(3) if e.request_id == reply.request_id]
    assert [(e.decision, e.outcome) for e in entries] == [("refused", reply.reason)]


async def test_hello_says_the_name_and_version_and_a_nameless_client_learns_the_name(
    make_harness: MakeHarness, tmp_path: Path, socket_dir: Path
) -> None:
    a, b = await two_executors(make_harness, tmp_path, socket_dir)
    async with ExecutorClient(b.settings.socket_path, b.bot_key, timeout=10) as client:
        hello = await client.hello()
        assert (hello["status"], hello["name"], hello["version"]) == ("ok", "b", VERSION)
        assert client.executor_name is None  # hello() tells; only a signed request needs the name
        reply = await client.call(ADMIN, "whoami")
        assert reply.status == "done" and client.executor_name == "b"
    # A client told the wrong name signs for that one, and b says so.
    wrong = b.client(executor_name="a")
    reply = await wrong.call(ADMIN, "whoami")
    assert reply.status == "refused" and "meant for executor 'a'" in reply.reason


async def test_hello_with_nobody_answering_is_unreachable(socket_dir: Path, harness: Harness) -> None:
    async with ExecutorClient(socket_dir / "nobody.sock", harness.bot_key, timeout=5) as client:
        with pytest.raises(ExecutorUnreachable, match="is not answering"):
            await client.hello()
        with pytest.raises(ExecutorUnreachable, match="is not answering"):
            await client.call(ADMIN, "whoami")


@pytest.mark.parametrize(
    ("host", "name"),
    [("nas", "nas"), ("NAS.local", "nas"), ("Mini_PC-2.lan", "minipc-2"), ("-edge-", "edge"), ("…", "executor"), ("x" * 80, "x" * 20), ("a" * 19 + "-b", "a" * 19)],
)
def test_the_default_name_is_made_from_the_host_name(host: str, name: str) -> None:
    assert name_from_host(host) == name
    assert executor_name_problem(name) is None


@pytest.mark.parametrize("value", ["NAS", "nas.local", "-nas", "nas-", "n" * 21, "nas b", "näs"])
def test_a_bad_executor_name_stops_with_one_line(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINGMAN_EXECUTOR_NAME", value)
    with pytest.raises(SettingsError) as refused:
        load_settings(ExecutorSettings, _env_file=None)
    line = str(refused.value)
    assert line.startswith("WINGMAN_EXECUTOR_NAME: ") and "is not an executor name: use 1 to 20 lowercase letters" in line
    assert "\n" not in line
    with pytest.raises(ValueError, match="is not an executor name"):
        ExecutorClient(Path("/nonexistent.sock"), None, executor_name=value)  # type: ignore[arg-type]
