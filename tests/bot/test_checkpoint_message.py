"""The daily checkpoint as the team sees it: one line to copy whole (a code entity), which
pasted back into ``wingman audit verify --witness`` vouches for the chain."""

from __future__ import annotations

from audit import verify_chain
from audit.checkpoints import parse_witness
from tests.bot.conftest import TEAM, World


async def test_the_checkpoint_message_carries_a_witness_line_to_copy(world: World) -> None:
    scheduler = world.harness.daemon.scheduler
    result = await scheduler.run_job("checkpoint")
    assert result is not None and result.witness is not None
    message = await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if m.from_bot and "Audit checkpoint" in m.text), None),
        timeout=30,
        what="the checkpoint message",
    )
    lines = message.text.splitlines()
    assert lines[0] == f"🔏 Audit checkpoint: seq {result.params['seq']} · {result.params['entry_hash'][:12]}…"
    assert lines[1] == result.witness
    utf16 = message.text.encode("utf-16-le")  # entity offsets count UTF-16 units
    codes = [
        utf16[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
        for e in message.entities if e["type"] == "code"
    ]  # fmt: skip
    assert codes[0] == result.witness  # a tap copies exactly the line
    executor = world.harness.executor
    pasted = parse_witness(lines[1], "pasted", executor.trusted_audit_keys)
    report = await verify_chain(executor.audit, None, executor.trusted_audit_keys, witnesses=[pasted])
    assert report.ok and report.witnesses == 1, report.summary()
