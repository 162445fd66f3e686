"""Persistence: calls and their ordered events in SQLite (embedded) or PostgreSQL."""
