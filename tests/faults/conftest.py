"""Fault scenarios against real daemon subprocesses: each one a way a user could be handed a
wrong number, or kept waiting far longer than the documented deadline. Helpers live in
tests/support.py."""
