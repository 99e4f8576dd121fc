"""Event contracts of the parley pipeline: one pydantic model per event type.

Published events are closed (unknown fields are an error); what other teams publish to us
(raw channel events) is read tolerantly (unknown fields are ignored).
"""
