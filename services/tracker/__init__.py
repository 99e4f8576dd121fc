"""Tracker: every case's life on record (PostgreSQL), lifecycle events on ``case.tracking``."""
