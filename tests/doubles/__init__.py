"""Test doubles for the process boundaries Wingman talks across (one shared fake per boundary)."""
