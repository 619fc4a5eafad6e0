"""OpenAPI description of problem responses, so /docs shows application/problem+json for each error."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ProblemDetails", "problem_responses"]


class ProblemFieldError(BaseModel):
    field: str
    message: str
    code: str


class ProblemDetails(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="URI reference of the problem type, e.g. /problems/validation-error")
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemFieldError] | None = Field(default=None, description="Field errors (validation only)")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {
            "description": HTTPStatus(code).phrase,
            "model": ProblemDetails,
            "content": {"application/problem+json": {}},
        }
        for code in statuses
    }
