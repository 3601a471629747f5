"""The executor's scheduled jobs on APScheduler: chain verification, checkpoints, retention,
audit reports and the approval-expiry sweep; results reach the chat through the outbox.

It sits below the executor and imports nothing of it: what the jobs need (the audit store,
keys, posting to the chat, expiring approvals, pruning rows) comes in a ``JobContext``
that the executor builds (``executor.scheduling``).

Public face::

    config = ScheduleConfig(verify_at="02:30", ...)       # ScheduleConfigError names a bad setting
    scheduler = Scheduler(JobContext(audit=..., config=config, ...))  # not started
    scheduler.start()                                      # inside the running event loop
    ...
    await scheduler.shutdown()                             # before the database closes

``Scheduler.run_job(job_id, now=...)`` runs one job at once exactly as a scheduled run
would (tests, and any future "run it now" command). The jobs are in ``scheduler.jobs``;
how runs are audited in ``scheduler.runs``; the reports in ``scheduler.reports``.
"""

from scheduler.config import ENV_NAMES, ScheduleConfig, ScheduleConfigError
from scheduler.jobs import JOBS, JobContext, JobResult, JobSpec
from scheduler.runner import Scheduler

__all__ = [
    "ENV_NAMES",
    "JOBS",
    "JobContext",
    "JobResult",
    "JobSpec",
    "ScheduleConfig",
    "ScheduleConfigError",
    "Scheduler",
]
