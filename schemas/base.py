"""Base classes shared by every event model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PublishedModel(BaseModel):
    """A model we publish: closed, so a typo or a removed field is an error, never silent."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


class ConsumedModel(BaseModel):
    """A model other teams publish to us: unknown fields are ignored so they can add fields freely."""

    model_config = ConfigDict(extra="ignore", frozen=True)
