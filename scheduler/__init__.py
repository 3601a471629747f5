"""APScheduler wiring and the scheduled audit jobs (arrives with issue 6)."""
