"""How /status and a stack's /restart read in the chat (bot.stacks, through bot.formatting.reply_text)."""

from __future__ import annotations

from bot.formatting import reply_text


def _c(name: str, project: str | None = None, service: str | None = None, state: str = "running") -> dict[str, object]:
    return {"name": name, "project": project, "service": service, "state": state, "health": None, "image": "app:1",
            "image_id": "1a2b3c4d5e6f", "uptime": "3m", "restart_count": 0}  # fmt: skip


def test_status_groups_containers_by_project_and_lists_the_rest_apart() -> None:
    result = {"containers": [
        _c("immich_db_1", "immich", "db"), _c("immich_server_1", "immich", "server", state="exited"),
        _c("<b>web</b>"), _c("paperless-app-1", "paperless", "app"),
    ]}  # fmt: skip
    text = reply_text("status", "done", "4 containers", result)
    blocks = text.split("\n\n")
    assert blocks[0].startswith("📦 <b>immich</b> · 1 of 2 running")
    assert "<b>db</b> running" in blocks[0] and "<b>server</b> exited" in blocks[0]
    assert blocks[1].startswith("📦 <b>paperless</b>")
    assert blocks[2].startswith("<b>Not in a stack</b>") and "&lt;b&gt;web&lt;/b&gt;" in blocks[2]


def test_one_stack_shows_only_its_block_and_a_plain_list_stays_plain() -> None:
    one = reply_text("status", "done", "", {"project": "immich", "containers": [_c("immich_db_1", "immich", "db")]})
    assert one.startswith("📦 <b>immich</b>") and "Not in a stack" not in one
    plain = reply_text("status", "done", "", {"containers": [_c("web")]})
    assert plain.startswith("<b>web</b> running")


def test_a_stack_restart_names_each_service_in_order() -> None:
    result = {"project": "immich", "order": ["db", "server"], "order_from": "the compose file", "services": [
        {"service": "db", "ok": True, "state": "running (healthy)"}, {"service": "server", "ok": True, "state": "running"},
    ]}  # fmt: skip
    text = reply_text("restart", "done", "stack immich restarted", result)
    assert text.splitlines() == [
        "✅ <b>immich</b> restarted, dependencies first (order from the compose file):",
        "✅ <b>db</b> running (healthy)",
        "✅ <b>server</b> running",
    ]


def test_with_many_hosts_a_stack_is_found_where_its_containers_are() -> None:
    from bot.fleet import Answer, Host
    from bot.routing import CONTAINERS, VMS, _lists
    from executor.client import Reply

    listed = Reply(200, "done", "2 containers", result={"containers": [_c("immich_db_1", "immich", "db"), _c("web")]})
    answer = Answer(Host("nas", client=None), listed)  # type: ignore[arg-type]
    assert _lists(answer, CONTAINERS, "immich") and _lists(answer, CONTAINERS, "stack:immich")
    assert _lists(answer, CONTAINERS, "web") and not _lists(answer, CONTAINERS, "paperless")
    assert not _lists(answer, VMS, "immich")
