"""The executor's own tables (the audit tables belong to ``audit``), as SQLAlchemy Core metadata.

Times are seconds since the epoch (float) so that both backends compare them alike.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Integer, MetaData, Table, Text

metadata = MetaData()

# Request token ids already accepted, kept until their expiry: a replay is refused even
# after a restart.
seen_tokens = Table(
    "seen_tokens",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("exp", Float, nullable=False, index=True),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Text, primary_key=True),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=True),
    Column("args", Text, nullable=False),  # canonical JSON of the action's arguments
    Column("binding", Text, nullable=False),  # ed25519:<kid>:<signature> by the audit key (executor.approvals)
    Column("requester", Text, nullable=False),  # "tg:<user id>"
    Column("requester_name", Text, nullable=True),  # how they appeared in the chat (display only); bound when set
    Column("context", Text, nullable=False),  # canonical JSON: chat id, message to edit…
    Column("tier", Integer, nullable=False),
    Column("approvals_needed", Integer, nullable=False),
    # pending → approved → running → done | failed | refused; or pending → rejected | cancelled | expired
    Column("state", Text, nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("decided_by", Text, nullable=True),
    Column("decided_by_name", Text, nullable=True),  # who rejected or cancelled, as they appeared (display only)
    Column("decided_at", Float, nullable=True),
    Column("result", Text, nullable=True),
    Column("request_id", Text, nullable=False),
)

approval_votes = Table(
    "approval_votes",
    metadata,
    Column("approval_id", Text, ForeignKey("approvals.id"), primary_key=True),
    Column("approver", Text, primary_key=True),
    Column("at", Float, nullable=False),
    Column("approver_name", Text, nullable=True),  # as they appeared in the chat (display only)
)

# The display name each person was last seen with ("tg:<id>" → "@alice"), for showing the
# audit trail and reports by name; the audit itself records ids only.
people = Table(
    "people",
    metadata,
    Column("user", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("seen_at", Float, nullable=False),
)

# Each approver's newest time step whose one-time code counted a vote: a code is spent
# once, and an older one is never taken again (see executor.codes).
used_codes = Table(
    "used_codes",
    metadata,
    Column("approver", Text, primary_key=True),  # "tg:<user id>"
    Column("step", BigInteger, primary_key=True),  # floor(unix time / 30)
    Column("at", Float, nullable=False),
)

# The outbox the bot long-polls: delivered at least once, in id order per chat.
notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("chat_id", BigInteger, nullable=True),  # None: the team chat (WINGMAN_CHAT_ID)
    Column("kind", Text, nullable=False),
    Column("ref", Text, nullable=True),  # what the message is about (an approval id…), for edits
    Column("payload", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float, nullable=True, index=True),
)

# The chat messages that show a notification's subject (an approval…), so later events
# about it edit those messages in place. The bot reports them when it acknowledges.
chat_messages = Table(
    "chat_messages",
    metadata,
    Column("ref", Text, primary_key=True),
    Column("chat_id", BigInteger, primary_key=True),
    Column("message_id", BigInteger, nullable=False),
)

# Updates the update checks found (executor.updates): each by a short id of the container
# and the exact image, so a Deploy button names one and an update is announced once.
# pending → gone (deployed, superseded, or its container no longer watched).
updates = Table(
    "updates",
    metadata,
    Column("id", Text, primary_key=True),
    Column("target", Text, nullable=False, index=True),
    Column("image", Text, nullable=False),  # repo:tag the container ran when it was found
    Column("current_tag", Text, nullable=False),
    Column("new_tag", Text, nullable=False),
    Column("current_digest", Text, nullable=False),
    Column("new_digest", Text, nullable=False),
    Column("reference", Text, nullable=False),  # repo:new_tag@new_digest: what a deploy request carries
    Column("created", Float, nullable=True),  # when the new image was built, if the registry said
    Column("found_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),  # the last check that still found it
    Column("announced_at", Float, nullable=True, index=True),  # None: not posted to the chat yet
    Column("state", Text, nullable=False, index=True),
)

# Alerts: one row per incident (a container's episode of trouble, from the first death or
# failed health check until it runs healthy again), see executor.alerts.
incidents = Table(
    "incidents",
    metadata,
    Column("id", Text, primary_key=True),
    Column("container", Text, nullable=False),
    Column("message", Text, nullable=False),  # the outbox ref of the chat message showing it ("alert:<id>")
    Column("state", Text, nullable=False, index=True),  # open | closed
    Column("facts", Text, nullable=False),  # JSON: kind, exit code, OOM, log tail, rollback possible
    Column("count", Integer, nullable=False),  # deaths or failed health checks in the episode
    Column("opened_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("closed_at", Float, nullable=True),
)
