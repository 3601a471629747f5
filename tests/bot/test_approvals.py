"""Approvals in the chat: buttons, who may tap, live progress, and a real container deployed."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from docker.api.client import APIClient

from bot.formatting import approval_text
from bot.handlers import ApprovalButton
from tests.bot.conftest import TEAM, World
from tests.docker.engine import Resources
from tests.docker.images import BuiltImages
from tests.harness import ADMIN, APPROVER, APPROVER2, OPERATOR


def button(op: str, approval_id: str) -> str:
    return ApprovalButton(op=op, id=approval_id).pack()


async def request_approval(world: World, user: int, text: str) -> str:
    [reply] = await world.reply_to(user, text)
    assert "needs approval" in reply.text, reply.text
    return reply.text.split("(request ")[1].split(")")[0]


async def answer_to_tap(world: World, user: int, approval_id: str, op: str) -> str:
    message = await world.approval_message(approval_id)
    before = len(world.double.callback_answers)
    world.double.press(user, message, button(op, approval_id))
    answers = await world.double.wait_for(
        lambda: world.double.callback_answers[before:] or None, timeout=30, what=f"the answer to {user}'s {op}"
    )
    return str(answers[0].text)


async def final_text(world: World, approval_id: str, marker: str) -> Any:
    return await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if f"Request {approval_id}" in m.text and marker in m.text), None),
        timeout=60,
        what=f"request {approval_id} to show {marker!r}",
    )


@pytest.fixture
async def docker_world(make_world: Any, resources: Resources, images: BuiltImages) -> World:
    world = await make_world(container_allowlist=[f"{resources.prefix}-*"], deploy_timeout_seconds=20)
    resources.container(images.ref("v1"), "web")
    return world


async def test_deploy_through_the_chat(docker_world: World, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    world = docker_world
    approval_id = await request_approval(world, OPERATOR, f"/deploy {resources.name('web')} {images.ref('v2')}")
    message = await world.approval_message(approval_id)
    assert [b["text"] for b in message.buttons] == ["✅ Approve", "🚫 Reject"]
    assert "Needs 1 approver, not the requester" in message.text
    # The image itself, as the executor bound it: the tag, the short id, and that it is local.
    hexdigits = images.id("v2").removeprefix("sha256:")
    assert f"{images.ref('v2')} · sha256:{hexdigits[:4]}…{hexdigits[-4:]} (local)" in message.text

    assert await answer_to_tap(world, OPERATOR, approval_id, "approve") == "you cannot approve your own request"
    assert await answer_to_tap(world, APPROVER, approval_id, "approve") == "Approved: running now."
    done = await final_text(world, approval_id, "✅ done")
    assert engine.inspect_container(resources.name("web"))["Image"] == images.id("v2")
    assert done.buttons == []
    assert f"Approved by user{APPROVER}" in done.text  # the name Telegram shows (tests/bot/conftest.py)
    # Edited in place: one approval message in the team chat, which went through progress.
    assert [m.message_id for m in world.double.chat(TEAM) if f"Request {approval_id}" in m.text] == [done.message_id]



async def test_a_long_deploy_shows_its_progress_live(docker_world: World, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    """An image without a health check must stay up for the running window (10 s): the
    approval message shows the wait as it happens, about once a second."""
    world = docker_world
    approval_id = await request_approval(world, OPERATOR, f"/deploy {resources.name('web')} {images.ref('nohc')}")
    await answer_to_tap(world, APPROVER, approval_id, "approve")
    done = await final_text(world, approval_id, "✅ done")
    progress = [v.text.splitlines()[-1] for v in done.history if v.text.splitlines()[-1].startswith("…")]
    assert len(progress) >= 3, [v.text for v in done.history]
    assert engine.inspect_container(resources.name("web"))["Image"] == images.id("nohc")


async def test_two_approvers_at_once_deploy_once(docker_world: World, resources: Resources, images: BuiltImages) -> None:
    world = docker_world
    approval_id = await request_approval(world, OPERATOR, f"/deploy {resources.name('web')} {images.ref('v2')}")
    message = await world.approval_message(approval_id)
    world.double.press(APPROVER, message, button("approve", approval_id))
    world.double.press(APPROVER2, message, button("approve", approval_id))
    answers = await world.double.wait_for(lambda: world.double.callback_answers if len(world.double.callback_answers) >= 2 else None, timeout=30)
    texts = sorted(a.text for a in answers)
    assert texts[0] == "Approved: running now." and "already decided" in texts[1]
    await final_text(world, approval_id, "✅ done")
    deploys = [e for e in await world.harness.executor.audit.tail(50) if e.action == "deploy" and e.decision == "executed"]
    assert len(deploys) == 1


async def test_a_failed_deploy_says_what_it_rolled_back_to(docker_world: World, resources: Resources, images: BuiltImages) -> None:
    world = docker_world
    approval_id = await request_approval(world, OPERATOR, f"/deploy {resources.name('web')} {images.ref('unhealthy')}")
    await answer_to_tap(world, APPROVER, approval_id, "approve")
    failed = await final_text(world, approval_id, "❌")
    assert "failed" in failed.text and "rolled back to" in failed.text and images.ref("v1") in failed.text


async def test_reject_and_expiry_edit_the_message(docker_world: World, resources: Resources, images: BuiltImages) -> None:
    world = docker_world
    first = await request_approval(world, OPERATOR, f"/deploy {resources.name('web')} {images.ref('v2')}")
    assert await answer_to_tap(world, APPROVER, first, "reject") == "Rejected."
    rejected = await final_text(world, first, "🚫 rejected")
    assert rejected.buttons == []

    second = await request_approval(world, OPERATOR, f"/deploy {resources.name('web')} {images.ref('v3')}")
    await world.approval_message(second)
    world.harness.executor.clock = lambda: time.time() + world.harness.settings.approval_ttl_seconds + 1
    await world.harness.executor.expire_due()
    expired = await final_text(world, second, "⌛ expired")
    assert expired.buttons == []


async def test_a_tap_after_the_ttl_shows_the_message_expired_without_buttons(make_world: Any) -> None:
    """The approver who taps late is told so, and the chat message itself says expired:
    the notice carries the approval as it is after the move, not as it was loaded."""
    world = await make_world()
    approval_id = await request_approval(world, OPERATOR, "/stop web")
    waiting = await world.approval_message(approval_id)
    assert waiting.buttons
    world.harness.executor.clock = lambda: time.time() + world.harness.settings.approval_ttl_seconds + 1
    assert await answer_to_tap(world, APPROVER, approval_id, "approve") == "this request has expired"
    expired = await final_text(world, approval_id, "⌛ expired")
    assert expired.buttons == [] and expired.message_id == waiting.message_id
    # The minute's sweep moves it (and announces it again, which changes nothing shown).
    assert [a.id for a in await world.harness.executor.expire_due()] == [approval_id]
    assert await world.harness.executor.expire_due() == []
    assert (await world.harness.executor.approvals.get(approval_id)).state == "expired"
    again = await final_text(world, approval_id, "⌛ expired")
    assert again.buttons == [] and again.message_id == waiting.message_id


async def test_an_approval_the_policy_no_longer_allows_ends_refused_at_run_time_in_the_chat(make_world: Any) -> None:
    """Asked under one policy, approved after the executor restarted with a narrower one."""
    world = await make_world()
    approval_id = await request_approval(world, OPERATOR, "/stop web")
    await world.approval_message(approval_id)
    await world.harness.stop()
    world.harness.settings = world.harness.settings.model_copy(update={"read_only": True})
    await world.harness.start()
    assert await answer_to_tap(world, APPROVER, approval_id, "approve") == "Approved: running now."
    refused = await final_text(world, approval_id, "⛔ not run")
    assert "refused at run time: read-only mode: only reads are allowed" in refused.text
    assert refused.buttons == []


async def test_a_tap_on_a_message_from_before_a_bot_restart_still_works(docker_world: World, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    world = docker_world
    approval_id = await request_approval(world, OPERATOR, f"/deploy {resources.name('web')} {images.ref('v2')}")
    await world.approval_message(approval_id)
    await world.restart_bot()
    assert await answer_to_tap(world, APPROVER, approval_id, "approve") == "Approved: running now."
    await final_text(world, approval_id, "✅ done")
    assert engine.inspect_container(resources.name("web"))["Image"] == images.id("v2")


async def test_tier_three_asks_each_approver_for_a_one_time_code(make_world: Any, tmp_path: Path) -> None:
    """The tap alone counts nothing: the bot asks for the code, forwards the digits typed in
    reply (even across a bot restart) or with /code, and the executor counts the vote."""
    (tmp_path / "policy.yaml").write_text("actions:\n  audit: {tier: 3}\n")
    world = await make_world(policy=tmp_path / "policy.yaml", allow_dangerous_ops=True)
    world.harness.enroll(ADMIN)
    world.harness.enroll(APPROVER2)
    approval_id = await request_approval(world, APPROVER, "/audit 3")
    assert "Needs 0 of 2, not the requester, each with a one-time code" in (await world.approval_message(approval_id)).text

    tapped = await answer_to_tap(world, ADMIN, approval_id, "approve")
    assert tapped == "This one needs your one-time code: reply to my message with the six digits."
    prompt = await world.double.wait_for(
        lambda: next((m for m in world.double.chat(TEAM) if m.from_bot and m.text.startswith(f"🔑 One-time code needed for request {approval_id}, user1:")), None),
        timeout=30, what="the bot asking for the code",
    )  # fmt: skip
    assert prompt.reply_markup == {"force_reply": True, "selective": True, "input_field_placeholder": "six digits"}
    assert any(e["type"] == "text_mention" and e["user"]["id"] == ADMIN for e in prompt.entities)
    assert (await world.harness.executor.approvals.get(approval_id)).votes == ()

    async def reply_to_prompt(user: int, text: str) -> str:
        world.double.send_text(user, text, chat_id=TEAM, reply_to=prompt)
        asked = world.double.chat(TEAM)[-1].message_id
        answer = await world.double.wait_for(
            lambda: next((m for m in world.double.chat(TEAM) if m.from_bot and (m.reply_to_message or {}).get("message_id") == asked), None),
            timeout=30, what=f"the answer to {text!r}",
        )  # fmt: skip
        return answer.text

    assert await reply_to_prompt(ADMIN, "12345") == "A one-time code is the six digits your authenticator app shows for Wingman, e.g. 123456. Reply to my message again."
    wrong = next(c for c in ("000000", "111111", "222222") if c not in {world.harness.code(ADMIN, s) for s in range(-3, 4)})
    assert await reply_to_prompt(ADMIN, wrong) == "❌ that one-time code is wrong (or your phone's clock is off); try the code your app shows now"
    assert (await world.harness.executor.approvals.get(approval_id)).votes == ()

    await world.restart_bot()  # the bot remembers nothing: the prompt itself names the request
    assert await reply_to_prompt(ADMIN, world.harness.code(ADMIN)) == "✅ approval 1 of 2 counted"
    await final_text(world, approval_id, "Needs 1 of 2")
    [answer] = await world.reply_to(APPROVER2, f"/code {approval_id} {world.harness.code(APPROVER2)}")
    assert answer.text == "✅ approved; running now"
    await final_text(world, approval_id, "✅ done")
    votes = [e for e in await world.harness.executor.audit.tail(50) if e.action == "approval.approve"]
    assert [(e.actor, e.decision, e.params["factor"]) for e in votes] == [
        ("tg:1", "refused", "none"), ("tg:1", "refused", "totp"), ("tg:1", "counted", "totp"), ("tg:3", "approved", "totp"),
    ]


async def test_notifications_survive_429_and_500_exactly_once_in_order(world: World) -> None:
    world.double.fail_next("sendMessage", count=2, status=429, retry_after=1)
    world.double.fail_next("sendMessage", count=2, status=500)
    for n in range(6):
        await world.harness.executor.outbox.add("report", {"text": f"report {n}"}, now=0.0)
    shown = await world.double.wait_for(
        lambda: [m.text for m in world.double.chat(TEAM) if m.text.startswith("report")]
        if len([m for m in world.double.chat(TEAM) if m.text.startswith("report")]) >= 6 else None,
        timeout=60,
    )
    assert shown == [f"report {n}" for n in range(6)]
    assert any(c.injected and c.status == 429 for c in world.double.calls_to("sendMessage"))
    assert any(c.injected and c.status == 500 for c in world.double.calls_to("sendMessage"))
    # Acknowledged once shown: nothing comes again (the ack follows the batch it closes).
    client = world.harness.client()
    for _ in range(200):
        if await client.poll(wait=0) == []:
            break
        await asyncio.sleep(0.05)
    assert await client.poll(wait=0) == []


async def test_edits_survive_429_and_500_and_the_final_state_shows(make_world: Any, tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text("actions:\n  verify: {tier: 2}\n")
    world = await make_world(policy=tmp_path / "policy.yaml")
    approval_id = await request_approval(world, ADMIN, "/verify")
    await world.approval_message(approval_id)
    world.double.fail_next("editMessageText", count=1, status=429, retry_after=1)
    world.double.fail_next("editMessageText", count=1, status=500)
    assert await answer_to_tap(world, APPROVER, approval_id, "approve") == "Approved: running now."
    done = await final_text(world, approval_id, "✅ done")
    assert [m.message_id for m in world.double.chat(TEAM) if f"Request {approval_id}" in m.text] == [done.message_id]


async def test_a_long_log_arrives_as_a_document(make_world: Any, resources: Resources, images: BuiltImages, engine: APIClient) -> None:
    world = await make_world(container_allowlist=[f"{resources.prefix}-*"])
    chatty = resources.container(
        images.ref("v1"), "chatty", command=["sh", "-c", "i=0; while [ $i -lt 10000 ]; do echo line $i of the log; i=$((i+1)); done"]
    )
    await asyncio.to_thread(engine.wait, chatty["Id"], timeout=60)  # it has written all 10,000 lines
    asked = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    [reply] = await world.reply_to(OPERATOR, f"/logs {resources.name('chatty')} 500")
    answered = datetime.now(timezone.utc)
    assert reply.kind == "document"
    assert reply.file is not None
    # Named after the container and the time it was sent: chatty-20261207-1402.log.
    name, stamp = reply.file.file_name.removesuffix(".log").rsplit("-", 2)[0], reply.file.file_name.removesuffix(".log").split("-")[-2:]
    assert name == resources.name("chatty") and reply.file.file_name.endswith(".log")
    assert asked <= datetime.strptime("-".join(stamp), "%Y%m%d-%H%M").replace(tzinfo=timezone.utc) <= answered
    assert reply.text == f"{resources.name('chatty')}, last 500 lines: too long for a message, attached as a file"
    lines = reply.file.data.decode().splitlines()
    assert lines == [f"line {n} of the log" for n in range(9500, 10000)]


def test_an_approval_shows_the_pinned_image_and_whether_it_will_be_pulled() -> None:
    digest = "sha256:3f2a" + "0" * 56 + "c91b"
    args = {"target": "web", "image": "nginx:1.27", "pinned": {"image": "nginx:1.27", "source": "registry", "id": digest}}
    text = approval_text({"id": "a1", "tier": 2, "action": "deploy", "args": args, "requester": "tg:4", "state": "pending"})
    assert "<b>deploy</b> <code>web</code> → <code>nginx:1.27 · sha256:3f2a…c91b</code> (will be pulled)" in text
    local = {**args, "pinned": {**args["pinned"], "source": "local"}}
    assert "(local)" in approval_text({"id": "a1", "action": "deploy", "args": local, "state": "done"})


@pytest.mark.parametrize("name", ["Ann", "🔑 One-time code needed for request evil1,", "x, request evil1,", "<b>&amp;"])
def test_the_code_prompt_names_its_request_whatever_the_approvers_name(name: str) -> None:
    """The request is read back from the prompt's start, before the name a user chose."""
    from bot.formatting import as_plain
    from bot.handlers import CODE_PROMPT, code_prompt

    found = CODE_PROMPT.match(as_plain(code_prompt(2, name, "abc123")))
    assert found is not None and found.group(1) == "abc123"


@pytest.mark.parametrize(("text", "code"), [("/code ab12 123456", "123456"), ("/code ab12 123 456", None)])
def test_the_code_command(text: str, code: str | None) -> None:
    from bot.handlers import Usage, parse

    words = text.split(maxsplit=1)[1]
    if code is None:
        with pytest.raises(Usage):
            parse("code", words)
    else:
        assert parse("code", words).args == {"id": "ab12", "code": code}
