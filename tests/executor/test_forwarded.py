"""An executor reached through OpenSSH's socket forwarding, as a remote host is (deploy/).

A real sshd (tests/ssh.py) forwards the executor's socket with ``ssh -N -L`` (the bot's
host dials the executor's) and ``ssh -N -R`` (the executor's host dials the bot's, opening
no inbound port). Requests go through unchanged, signed for the executor's name; a killed
forward leaves a socket nobody answers on, and a restarted one carries requests again to
the same client, without making a new one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.client import ExecutorClient, ExecutorUnreachable
from tests.harness import ADMIN, Harness
from tests.ssh import Sshd


async def whoami_through(client: ExecutorClient, harness: Harness) -> None:
    reply = await client.call(ADMIN, "whoami")
    assert reply.status == "done", reply
    entries = [e for e in await harness.executor.audit.tail(3) if e.request_id == reply.request_id]
    assert [(e.actor, e.action, e.decision) for e in entries] == [(f"tg:{ADMIN}", "whoami", "executed")]


async def test_a_forward_carries_requests_and_a_restarted_one_carries_them_again(
    sshd: Sshd, harness: Harness, socket_dir: Path
) -> None:
    forwarded = socket_dir.parent / "nas.sock"
    forward = sshd.forward(forwarded, harness.settings.socket_path)
    async with ExecutorClient(forwarded, harness.bot_key, timeout=10) as client:
        assert (await client.hello())["name"] == harness.name  # learnt through the forward
        await whoami_through(client, harness)

        forward.kill()
        assert forwarded.is_socket()  # the file stays; nobody answers on it
        with pytest.raises(ExecutorUnreachable, match="is not answering"):
            await client.call(ADMIN, "whoami")
        with pytest.raises(ExecutorUnreachable):
            await client.hello()

        forward.start()  # StreamLocalBindUnlink: the stale file is replaced
        await whoami_through(client, harness)


async def test_a_reverse_forward_from_the_executors_host_carries_requests(
    sshd: Sshd, harness: Harness, socket_dir: Path
) -> None:
    bot_side = socket_dir.parent / "from-nas.sock"
    sshd.forward(harness.settings.socket_path, bot_side, reverse=True)
    async with ExecutorClient(bot_side, harness.bot_key, executor_name=harness.name, timeout=10) as client:
        await whoami_through(client, harness)
