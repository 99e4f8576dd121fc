"""Intake: raw channel messages in, canonical ``feedback.received`` or ``feedback.rejected`` out."""
