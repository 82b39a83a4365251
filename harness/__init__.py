"""Forgea schema pack harness: apply, roll back, lint and verify the SQL migrations."""

__version__ = "0.1.0"
