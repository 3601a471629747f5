"""The executor's decision path: verify, de-duplicate, decide, run or wait for approval, audit.

``Executor.handle(token)`` is the whole of it: the HTTP layer only moves bytes. Nothing
reaches an action handler before the token verified, its id was never seen before and
policy said yes; every request, valid or not, leaves an audit entry.

An approved request is decided again just before it runs (``_execute_approved``) under
the policy the executor holds then: the settings and policy file as loaded at its last
start. Approvals survive a restart, so a restart with a narrower policy refuses at run
time what it no longer allows. Every approved request ends in a final state, audited,
whatever it meets; at start-up ``resume_approvals`` starts or ends those the last run left.

Why this file is longer than about 500 lines: the decision path, the votes and the
background run of an approved request all write through the same two steps, ``_record``
(the audit entry, committed with the request's replay claim) and ``_notify_approval``; cut
apart, each piece would need those handed back from the executor, the coupling that
issue 14 took out of the action handlers. What stands alone is elsewhere: the handlers
(``executor.actions``), what the audit can record (``executor.recordable``), the approvals'
storage (``executor.approvals``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from docker.errors import APIError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from audit import AuditError, AuditStore, verify_chain
from audit.verify import VerifyReport
from audit.signing import SigningKey
from executor import actions
from executor.approvals import APPROVED, CANCELLED, DONE, EXPIRED, FAILED, PENDING, REFUSED, REJECTED, RUNNING, Approval, Approvals, Vote
from executor.codes import CODE_PATTERN, OneTimeCodes
from executor.deploy import Deployer
from executor.docker_driver import DockerDriver, explain_api_error
from executor.errors import ActionError, Unavailable
from executor.proxmox import ProxmoxDriver
from executor.metrics import LastVerification, RequestCounter
from executor.outbox import MAX_WAIT, Outbox
from executor.people import People
from executor.protocol import PROTOCOL_ACTIONS, Request, TokenRejected, TokenVerifier, audience_for
from executor.stack_update import recover_update
from executor.recordable import audit_params, shown_target, unrecordable
from executor.replay import Claim, ReplayGuard
from executor.updates import UpdateCheck, UpdateStore, UpdateWatch
from policy import Policy, Role, Verdict, decide, may_approve, needs_one_time_code, run_time_refusal

log = logging.getLogger("wingman.executor")
END_ATTEMPTS = 8  # ending an approved request is retried about 2 minutes while the database fails


@dataclass(frozen=True, slots=True)
class Reply:
    status: str
    reason: str
    request_id: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "request_id": self.request_id, "result": self.result}


class Executor:
    """Everything the daemon knows, and the one entry point that uses it."""

    def __init__(
        self,
        *,
        policy: Policy,
        audit: AuditStore,
        engine: AsyncEngine,
        trusted: dict[str, Ed25519PublicKey],
        name: str,
        audit_key: SigningKey,
        export_path: Path,
        approval_ttl: float,
        clock: Callable[[], float] = time.time,
        docker: DockerDriver | None = None,
        deployer: Deployer | None = None,
        proxmox: ProxmoxDriver | None = None,
        codes_dir: Path | None = None,
        update_check: UpdateCheck | None = None,
    ) -> None:
        self.policy = policy
        self.name = name  # tokens must be meant for it (their audience), see executor.protocol
        self.proxmox = proxmox
        self.docker = docker
        self.deployer = deployer
        self.audit = audit
        self.audit_key = audit_key
        self.trusted_audit_keys = {audit_key.kid: audit_key.public}
        self.export_path = export_path
        self.approvals = Approvals(engine, audit_key)
        self.outbox = Outbox(engine)
        self.updates = UpdateWatch(update_check, UpdateStore(engine), audit, self.outbox) if update_check is not None else None
        self.people = People(engine)
        self.replay = ReplayGuard(engine)
        self.codes = OneTimeCodes(codes_dir)  # None: nobody is enrolled, no code is right
        self.clock = clock
        self._verifier = TokenVerifier(trusted, audience_for(name))
        self._approval_ttl = approval_ttl
        self._running: set[asyncio.Task[None]] = set()
        self._claims: dict[str, Claim] = {}  # request id -> its token's claim, until written
        self.requests = RequestCounter()
        self.last_verified = LastVerification()

    def action_context(self) -> actions.ActionContext:
        """What the action handlers may use, as the executor holds it now."""
        return actions.ActionContext(
            policy=self.policy, audit=self.audit, approvals=self.approvals, verify=self.verify_audit,
            clock=self.clock, docker=self.docker, deployer=self.deployer, proxmox=self.proxmox, updates=self.updates,
            people=self.people,
        )  # fmt: skip

    # -- the entry point -------------------------------------------------------------------

    async def handle(self, token: str) -> Reply:
        """The answer to one token; every path, even a bug's, ends in an audited answer."""
        request_id = secrets.token_hex(8)
        request: Request | None = None
        try:
            verified = await self._verified(token, request_id)
            if isinstance(verified, Reply):
                return verified
            request = verified
            if request.display_name is not None and request.user_id is not None:
                await self.people.remember(request.actor, request.display_name, self.clock())
            if request.action in PROTOCOL_ACTIONS:
                await self._write_claim(request_id)
                return await self._protocol_action(request, request_id)
            problem = unrecordable(request)
            if problem is not None:
                return await self._refuse(request, request_id, "bad_request", problem)
            return await self._catalogue_action(request, request_id)
        except (AuditError, SQLAlchemyError, OSError) as exc:
            log.error("request %s failed on the database: %s", request_id, exc)
            return Reply("unavailable", "the executor's database is unavailable; try again shortly", request_id)
        except Exception as exc:
            return await self._internal_error(request, request_id, exc)
        finally:
            self._claims.pop(request_id, None)

    async def _verified(self, token: str, request_id: str) -> Request | Reply:
        """The verified request, its token id claimed; or the answer to a refused token
        (the refusal audited)."""
        now = time.time()  # token times are the signer's wall clock, not self.clock
        try:
            request = self._verifier.verify(token, now)
            claim = self.replay.claim(request.jti, request.exp, now)
            if claim is None:
                raise TokenRejected("this token was already used (replay)")
        except TokenRejected as exc:
            await self._record("unverified", "request", exc.status, None, {}, exc.reason, request_id)
            return Reply(exc.status, exc.reason, request_id)
        # The claim is written with the request's first audit entry (see _record), one
        # commit for both; the paths that change something before that write it first.
        self._claims[request_id] = claim
        return request

    async def _internal_error(self, request: Request | None, request_id: str, exc: Exception) -> Reply:
        """A bug: logged with its traceback, audited, and answered with the request id to quote."""
        log.error("request %s hit an internal error", request_id, exc_info=exc)
        reason = f"the executor hit an internal error ({type(exc).__name__}); quote request {request_id} to its operator"
        try:
            if request is None:
                await self._record("unverified", "request", "internal_error", None, {}, reason, request_id)
            else:
                await self._record(
                    request.actor, request.action, "internal_error", shown_target(request.args),
                    audit_params(request.args), reason, request_id,
                )  # fmt: skip
        except Exception as audit_exc:  # the answer still goes out; the log has both
            log.error("request %s: the internal error could not be audited: %s", request_id, audit_exc)
        return Reply("internal_error", reason, request_id)

    async def _write_claim(self, request_id: str) -> None:
        claim = self._claims.pop(request_id, None)
        if claim is not None:
            await self.replay.persist(claim)

    async def _record(
        self,
        actor: str,
        action: str,
        decision: str,
        target: str | None,
        params: dict[str, Any],
        outcome: str | None,
        request_id: str,
    ) -> None:
        claim = self._claims.pop(request_id, None)
        await self.audit.append(
            actor=actor, action=action, decision=decision, target=target, params=params, outcome=outcome,
            request_id=request_id, along=claim.along if claim is not None else None,
        )  # fmt: skip
        self.requests.count(decision)

    # -- catalogue actions -----------------------------------------------------------------

    async def _catalogue_action(self, request: Request, request_id: str) -> Reply:
        if request.user_id is None:
            return await self._refuse(request, request_id, "bad_request", "the client may only use outbox.* as itself")
        args = request.args
        target = args.get("target")
        shown = shown_target(args)
        if not (target is None or isinstance(target, (str, int))) or isinstance(target, bool):
            return await self._refuse(request, request_id, "bad_request", "args.target must be a name or a number")
        try:
            # A bare stack name becomes stack:<project>; a container's labels may allow it by its stack.
            args, labels = await actions.resolve_target(self.action_context(), request.action, args)
        except ActionError as exc:
            return await self._refuse(request, request_id, exc.status, exc.reason)
        target, shown = args.get("target"), shown_target(args)
        decision = decide(self.policy, user_id=request.user_id, action=request.action, target=target, labels=labels)
        params = audit_params(args)
        if decision.verdict is Verdict.DENY:
            await self._record(request.actor, request.action, "denied", shown, params, decision.reason, request_id)
            return Reply("denied", decision.reason, request_id)
        try:
            actions.check_arguments(request.action, args)
            # Deploy and rollback are bound to the image itself from here on (approve what you see).
            args = await actions.pin_image(self.action_context(), request.action, args)
        except ActionError as exc:
            await self._record(request.actor, request.action, "refused", shown, params, exc.reason, request_id)
            return Reply(exc.status, exc.reason, request_id)
        params = audit_params(args)
        if decision.verdict is Verdict.NEEDS_APPROVAL:
            await self._write_claim(request_id)
            approval = await self.approvals.create(
                action=request.action,
                target=shown,
                args=args,
                requester=request.actor,
                context=request.chat,
                tier=int(decision.tier or 0),
                approvals_needed=decision.approvals_needed,
                request_id=request_id,
                now=self.clock(),
                ttl=self._approval_ttl,
                requester_name=request.display_name,
            )
            await self._record(
                request.actor, request.action, "needs_approval", shown, {**params, "approval": approval.id},
                decision.reason, request_id,
            )  # fmt: skip
            await self._notify_approval("approval.requested", approval)
            return Reply("pending", decision.reason, request_id, {"approval": approval.as_json()})
        if (decision.tier or 0) > 0:
            # Written before acting, so even a crash mid-action leaves the attempt on record.
            await self._record(request.actor, request.action, "allowed", shown, params, None, request_id)
        return await self._run(request.actor, request.action, args, request_id, shown, params, request.user_id)

    async def _run(
        self,
        actor: str,
        action: str,
        args: dict[str, Any],
        request_id: str,
        target: str | None,
        params: dict[str, Any],
        user_id: int,
        approval: Approval | None = None,
    ) -> Reply:
        handler = actions.HANDLERS.get(action)
        progress = self._progress_of(approval) if approval is not None else actions.no_progress
        try:
            if handler is None:
                raise Unavailable(f"{action} is not available on this executor yet")
            result = await handler(self.action_context(), actions.Call(user_id=user_id, args=args, approval=approval, progress=progress))
        except ActionError as exc:
            await self._record(actor, action, exc.decision, target, params, exc.reason, request_id)
            return Reply(exc.status, exc.reason, request_id, _failure_details(exc))
        await self._record(actor, action, "executed", target, params, result.summary, request_id)
        return Reply("done", result.summary, request_id, result.data)

    def _progress_of(self, approval: Approval) -> actions.Progress:
        """Progress of an approved action, shown live on its approval message."""

        async def progress(stage: str, details: dict[str, Any]) -> None:
            await self._notify_approval(
                "progress", approval, {"progress": {"stage": stage, **_jsonable(details)}}, state=RUNNING
            )

        return progress

    # -- approvals and the outbox ----------------------------------------------------------

    async def _protocol_action(self, request: Request, request_id: str) -> Reply:
        if request.action.startswith("outbox."):
            if request.user_id is not None:
                return await self._refuse(request, request_id, "denied", "only the bot itself reads the outbox")
            return await self._outbox_action(request, request_id)
        if request.user_id is None:
            return await self._refuse(request, request_id, "bad_request", "approvals are decided by people, not the bot")
        approval_id = request.args.get("id")
        if not isinstance(approval_id, str) or not approval_id.isalnum() or len(approval_id) > 32:
            return await self._refuse(request, request_id, "bad_request", "args.id must name an approval")
        user = request.user_id
        now = self.clock()

        if request.action == "approval.approve":
            code = request.args.get("code")
            if code is not None and not (isinstance(code, str) and CODE_PATTERN.fullmatch(code)):
                reason = "args.code must be the six digits of a one-time code"
                await self._record(request.actor, request.action, "bad_request", None, {"approval": approval_id, "factor": "totp"}, reason, request_id)
                return Reply("bad_request", reason, request_id)

            def check(approval: Approval) -> tuple[bool, str]:
                voters = frozenset(int(v.removeprefix("tg:")) for v in approval.votes)
                verdict = may_approve(
                    self.policy, approver_id=user, requester_id=_user_of(approval.requester), already_approved_by=voters
                )
                return verdict.allowed, verdict.reason

            # The approver's phone knows wall-clock time, not self.clock.
            checked = await self.codes.check_for(request.actor, user, code, time.time())
            vote = await self.approvals.vote(
                approval_id, request.actor, now, check,
                code_required=lambda approval: needs_one_time_code(self.policy, approval.tier), code=checked,
                approver_name=request.display_name,
            )  # fmt: skip
        elif request.action == "approval.reject":
            def check(approval: Approval) -> tuple[bool, str]:
                role = self.policy.role_of(user)
                if request.actor == approval.requester:
                    return False, "you cannot reject your own request; cancel it instead"
                if role is None or role < Role.APPROVER:
                    return False, "only approvers can reject requests"
                return True, ""

            vote = await self.approvals.decide(approval_id, request.actor, REJECTED, now, check, request.display_name)
        else:
            def check(approval: Approval) -> tuple[bool, str]:
                if request.actor != approval.requester:
                    return False, "only the requester can cancel a request"
                return True, ""

            vote = await self.approvals.decide(approval_id, request.actor, CANCELLED, now, check, request.display_name)
        return await self._after_vote(request, request_id, approval_id, vote)

    async def _after_vote(self, request: Request, request_id: str, approval_id: str, vote: Vote) -> Reply:
        approval = vote.approval
        target = approval.target if approval else None
        params: dict[str, Any] = {"approval": approval_id}
        if request.action == "approval.approve":
            params["factor"] = vote.factor  # which factor, besides the signature, the vote carried
        refused = vote.outcome in ("unknown", "refused", "changed", "closed", "expired")
        await self._record(
            request.actor, request.action, vote.outcome if not refused else "refused", target, params,
            vote.reason if refused else None, request_id,
        )  # fmt: skip
        if approval is None:
            return Reply("denied", vote.reason, request_id)
        if vote.outcome == "expired":
            await self._notify_approval("approval.expired", approval)
        if vote.outcome == "changed":  # tampered with: ended, never run
            await self._notify_approval("approval.finished", approval, extra={"outcome": {"status": "denied", "reason": vote.reason}})
        if refused:
            status = "conflict" if vote.outcome in ("closed", "expired") else "denied"
            result: dict[str, Any] = {"approval": approval.as_json()}
            if vote.code_required:
                result["code_required"] = True  # the client asks the approver for the code
            return Reply(status, vote.reason, request_id, result)
        if vote.outcome == "counted":
            await self._notify_approval("approval.updated", approval)
            return Reply("pending", vote.reason, request_id, {"approval": approval.as_json()})
        if vote.outcome in (REJECTED, CANCELLED):
            await self._notify_approval("approval.decided", approval)
            return Reply("done", f"request {vote.outcome}", request_id, {"approval": approval.as_json()})
        # This vote completed the approval: run it, once, in the background.
        await self._notify_approval("approval.decided", approval)
        self._start_approved(approval)
        return Reply("done", "approved; running now", request_id, {"approval": approval.as_json()})

    def _start_approved(self, approval: Approval) -> None:
        task = asyncio.create_task(self._execute_approved(approval), name=f"approval-{approval.id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _execute_approved(self, approval: Approval) -> None:
        """Run an approved request and end it in a final state, whatever happens on the way.

        It is decided again first, under the policy this executor holds now: the one it
        loaded at its last start, so a restart with a narrower policy file or settings
        refuses what it no longer allows. Any exception (the database, the Docker engine,
        a bug) ends it ``failed``; either way the outcome is audited and the approval
        message edited.
        """
        try:
            if not await self.approvals.move(approval.id, APPROVED, RUNNING, self.clock()):
                return  # somebody else runs it (cannot happen: only the CAS winner gets here)
        except Exception as exc:  # noqa: BLE001 - not started: still approved, the next start runs it
            log.error("request %s could not be started (%s); the executor's next start runs it", approval.id, _unexpected(exc))
            return
        params = {**audit_params(approval.args), "approval": approval.id, "approved_by": approval.decided_by}
        audit: str | None = None  # the outcome's audit decision, when _run has not written it
        try:
            refusal = await self._run_time_refusal(approval)
            if refusal is not None:
                reply, final, audit = Reply("denied", f"refused at run time: {refusal}", approval.request_id), REFUSED, "refused"
            else:
                reply = await self._run(
                    approval.requester, approval.action, approval.args, approval.request_id, approval.target, params,
                    _user_of(approval.requester), approval,
                )  # fmt: skip
                final = DONE if reply.status == "done" else FAILED
        except Exception as exc:  # noqa: BLE001 - whatever it is, the request must still end
            log.error("approved request %s (%s) failed unexpectedly", approval.id, approval.action, exc_info=exc)
            reply, final, audit = Reply("failed", f"failed: {_unexpected(exc)}", approval.request_id), FAILED, "failed"
        await self._end_approval(approval, final, reply, audit, params)

    async def _run_time_refusal(self, approval: Approval) -> str | None:
        if not approval.intact:  # edited in the database since it was made (see executor.approvals)
            return "the stored request does not match its signature (changed after it was made)"
        target = approval.args.get("target")
        return run_time_refusal(
            self.policy,
            requester_id=_user_of(approval.requester),
            action=approval.action,
            target=target,
            approved_by=frozenset(_user_of(v) for v in approval.votes),
            labels=await actions.container_labels(self.action_context(), target),
        )

    async def _end_approval(
        self, approval: Approval, final: str, reply: Reply, audit: str | None, params: dict[str, Any]
    ) -> None:
        """Audit (unless already done), move to ``final`` and tell the chat; retried while the
        database fails. An approval still left ``running`` is ended at the next start."""
        for attempt in range(END_ATTEMPTS):
            try:
                if audit is not None:
                    await self._record(approval.requester, approval.action, audit, approval.target, params, reply.reason, approval.request_id)
                    audit = None
                await self.approvals.move(approval.id, RUNNING, final, self.clock(), result=reply.reason)
                finished = await self.approvals.get(approval.id)
                await self._notify_approval(
                    "approval.finished", finished or approval, extra={"outcome": reply.as_json()},
                    state=None if finished is not None else final,
                )  # fmt: skip
                return
            except Exception as exc:  # noqa: BLE001 - the database, most likely: wait and try again
                log.error("request %s: could not record its end (%s)", approval.id, _unexpected(exc))
                if attempt + 1 < END_ATTEMPTS:
                    await asyncio.sleep(min(2.0**attempt, 30.0))
        log.error("request %s could not be ended; the executor's next start ends it", approval.id)

    async def resume_approvals(self) -> list[str]:
        """At start-up, after deploy recovery: resolve approvals a stop left approved or running.

        Nothing runs yet, so each one found was left by the previous run. One approved but
        not started is started now (decided again first, as always); one interrupted while
        running is ended with what recovery found. Returns one line per approval.
        """
        lines: list[str] = []
        for approval in await self.approvals.unfinished():
            what = f"request {approval.id} ({approval.action} {approval.target or ''})".replace(" )", ")")
            if approval.state == APPROVED:
                lines.append(f"{what} was approved but had not started: starting it now")
                self._start_approved(approval)
                continue
            try:
                reply = await self._interrupted_outcome(approval)
            except Exception as exc:  # noqa: BLE001 - it still ends; how is what we cannot tell
                log.error("request %s: could not look at what recovery found", approval.id, exc_info=exc)
                reply = Reply("failed", f"interrupted by an executor restart; its outcome cannot be told: {_unexpected(exc)}", approval.request_id)
            params = {**audit_params(approval.args), "approval": approval.id, "approved_by": approval.decided_by}
            final = DONE if reply.status == "done" else FAILED
            await self._end_approval(approval, final, reply, "executed" if final == DONE else "failed", params)
            lines.append(f"{what} was interrupted: {reply.reason}")
        return lines

    async def _interrupted_outcome(self, approval: Approval) -> Reply:
        """How a request interrupted by a stop ended, as far as this executor can tell."""
        target = approval.target or ""
        if approval.action == "update" and self.deployer is not None:
            # Putting services back is decided again like any run, under the policy held now.
            refusal = await self._run_time_refusal(approval)
            finished, line = await recover_update(
                self.deployer, approval.args, requester=approval.requester,
                since=(approval.decided_at or approval.created_at) - 1.0, refusal=refusal,
            )  # fmt: skip
            return Reply("done" if finished else "failed", line, approval.request_id)
        if approval.action in ("deploy", "rollback") and self.deployer is not None:
            since = (approval.decided_at or approval.created_at) - 1.0
            found = next(
                (
                    d for d in await self.deployer.store.history(target)
                    if d.action == approval.action and d.requested_by == approval.requester and d.started_at >= since
                ),
                None,
            )  # fmt: skip
            if found is None:
                return Reply("failed", f"interrupted by an executor restart before it changed anything; {target} is as it was", approval.request_id)
            if not found.finished:
                return Reply("failed", f"interrupted by an executor restart; recovery could not finish {approval.action} {found.id}: look at {target} by hand", approval.request_id)
            if found.state == "succeeded":
                return Reply("done", f"completed across an executor restart: {found.outcome}", approval.request_id)
            return Reply("failed", f"interrupted by an executor restart: {found.outcome}", approval.request_id)
        return Reply(
            "failed",
            f"interrupted by an executor restart; whether {approval.action} took effect is unknown: check {target or 'it'} with /status",
            approval.request_id,
        )

    async def _notify_approval(
        self, kind: str, approval: Approval, extra: dict[str, Any] | None = None, *, state: str | None = None
    ) -> None:
        """Tell the team chat, and the requester's private chat when the request came from there."""
        shown = approval.as_json() if state is None else {**approval.as_json(), "state": state}
        shown["code_required"] = needs_one_time_code(self.policy, approval.tier)
        payload = {"approval": shown, **(extra or {})}
        now = self.clock()
        await self.outbox.add(kind, payload, now=now, ref=approval.id)
        chat = approval.context
        if chat.get("private") and isinstance(chat.get("chat_id"), int):
            await self.outbox.add(kind, payload, now=now, chat_id=chat["chat_id"], ref=approval.id)

    async def expire_due(self) -> list[Approval]:
        """Expire approvals past their time, tell the chat and audit it (run every minute).

        The only place an approval becomes ``expired``, whether or not anyone tapped it
        late. The notice goes out before the move: a failure after it leaves the row
        pending, and the next sweep announces and moves it again (one more edit that
        changes nothing), so the message always comes to say expired.
        """
        now = self.clock()
        expired: list[Approval] = []
        for approval in await self.approvals.due(now):
            shown = dataclasses.replace(approval, state=EXPIRED)
            await self._notify_approval("approval.expired", shown)
            if await self.approvals.move(approval.id, PENDING, EXPIRED, now):
                await self._record("system", "approval.expire", "expired", approval.target, {"approval": approval.id}, None, approval.request_id)
                expired.append(shown)
        return expired

    async def _outbox_action(self, request: Request, request_id: str) -> Reply:
        if request.action == "outbox.poll":
            wait, limit, after = request.args.get("wait", 0), request.args.get("limit", 100), request.args.get("after", 0)
            if not _number(wait) or not _whole(limit) or not _whole(after):
                return await self._refuse(request, request_id, "bad_request", "args.wait, args.limit and args.after must be numbers")
            # Clamped before float(): a whole number too big for a float is still a number.
            events = await self.outbox.poll(limit=limit, wait=float(max(0, min(wait, MAX_WAIT))), after=max(0, after))
            return Reply("done", f"{len(events)} notifications", request_id, {"notifications": [e.as_json() for e in events]})
        ids, posted = request.args.get("ids"), request.args.get("posted", [])
        if not isinstance(ids, list) or not all(_whole(i) for i in ids):
            return await self._refuse(request, request_id, "bad_request", "args.ids must be a list of notification ids")
        if not isinstance(posted, list) or not all(
            isinstance(p, dict) and all(_whole(p.get(k)) for k in ("id", "chat_id", "message_id")) for p in posted
        ):
            return await self._refuse(request, request_id, "bad_request", "args.posted must list {id, chat_id, message_id}")
        triples = [(p["id"], p["chat_id"], p["message_id"]) for p in posted]
        acked = await self.outbox.ack(ids, now=self.clock(), posted=triples)
        return Reply("done", f"{acked} acknowledged", request_id, {"acknowledged": acked})

    async def _refuse(self, request: Request, request_id: str, status: str, reason: str) -> Reply:
        await self._record(request.actor, request.action, status, shown_target(request.args), audit_params(request.args), reason, request_id)
        return Reply(status, reason, request_id)

    async def verify_audit(self, now: datetime | None = None) -> VerifyReport:
        """The whole trail verified (``audit.verify_chain``) off the event loop.

        A million entries take seconds of hashing: it runs in a thread with an event loop
        and a read-only store of its own (connections belong to one loop), so requests are
        answered meanwhile. Raises ``AuditError`` when nothing can be concluded.
        """
        url, export_path, trusted = self.audit.url, self.export_path, dict(self.trusted_audit_keys)

        async def verify() -> VerifyReport:
            store = await AuditStore.open(url, migrate=False)
            try:
                return await verify_chain(store, export_path, trusted, now=now)
            finally:
                await store.close()

        return await asyncio.to_thread(asyncio.run, verify())

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for approved actions still running."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)

    async def close(self) -> None:
        self.outbox.wake()


def _unexpected(exc: BaseException) -> str:
    """One line for the chat about an exception nobody planned for (the log has the rest)."""
    if isinstance(exc, (SQLAlchemyError, AuditError)):
        return f"the executor's database failed while it ran ({type(exc).__name__}); see the executor's log"
    if isinstance(exc, APIError):
        return f"the Docker engine refused it: {explain_api_error(exc)}"
    return f"an unexpected error stopped it ({type(exc).__name__}); see the executor's log"


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _user_of(actor: str) -> int:
    return int(actor.removeprefix("tg:"))


def _failure_details(exc: Exception) -> dict[str, Any]:
    """What a failed deploy leaves for the chat: what it rolled back to, health and logs."""
    details: dict[str, Any] = {}
    for name in ("health_log", "last_logs"):
        value = getattr(exc, name, None)
        if value:
            details[name] = list(value)
    rolled_back_to = getattr(exc, "rolled_back_to", None)
    if rolled_back_to is not None:
        details["rolled_back_to"] = {"tag": rolled_back_to.tag, "id": rolled_back_to.id}
    return details


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in details.items()}
