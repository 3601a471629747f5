"""The executor's scheduled jobs on APScheduler: chain verification, checkpoints, retention,
audit reports and the approval-expiry sweep; results reach the chat through the outbox.

Public face::

    config = ScheduleConfig(verify_at="02:30", ...)       # ScheduleConfigError names a bad setting
    scheduler = build_scheduler(executor, engine, config)  # not started
    scheduler.start()                                      # inside the running event loop
    ...
    await scheduler.shutdown()                             # before the database closes

``Scheduler.run_job(job_id, now=...)`` runs one job at once exactly as a scheduled run
would (tests, and any future "run it now" command). The jobs are in ``scheduler.jobs``;
how runs are audited in ``scheduler.runs``; the reports in ``scheduler.reports``.
"""

from scheduler.config import ENV_NAMES, ScheduleConfig, ScheduleConfigError
from scheduler.jobs import JOBS, JobContext, JobResult, JobSpec
from scheduler.runner import Scheduler, build_scheduler

__all__ = [
    "ENV_NAMES",
    "JOBS",
    "JobContext",
    "JobResult",
    "JobSpec",
    "ScheduleConfig",
    "ScheduleConfigError",
    "Scheduler",
    "build_scheduler",
]
