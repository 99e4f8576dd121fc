"""Triage: category, risk flags, sentiment and priority of each feedback, with the reasons."""
