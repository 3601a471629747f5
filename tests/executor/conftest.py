"""Names the executor tests share; the harness itself lives in tests/harness.py."""

from tests.harness import ADMIN, APPROVER, APPROVER2, OPERATOR, STRANGER, VIEWER, Harness  # noqa: F401
