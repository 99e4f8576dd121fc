"""Routing: case identity (merge, split), queues by rules, escalation, overflow to the AI lane, public opinion."""
