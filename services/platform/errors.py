"""Errors a use case raises for bad requests, and their gRPC status codes (never INTERNAL for bad input)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import psycopg


class RequestError(Exception):
    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidArgument(RequestError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(RequestError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(RequestError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(RequestError):
    code = grpc.StatusCode.UNAVAILABLE


F = TypeVar("F", bound=Callable[..., Any])
DATABASE_UNAVAILABLE = "the database is unavailable; try again"


def check_no_nul(message: Any, path: str = "") -> None:
    """PostgreSQL text cannot hold NUL: refuse such a string up front, naming the field."""
    if not hasattr(message, "ListFields"):
        return
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        values = value if field.is_repeated and not hasattr(value, "items") else [value]
        if hasattr(value, "items"):
            values = [*value.keys(), *value.values()]
        for item in values:
            if isinstance(item, str) and "\x00" in item:
                raise InvalidArgument(f"{name} contains a NUL character")
            check_no_nul(item, f"{name}.")


def grpc_errors(method: F) -> F:
    """Turn RequestError into the matching gRPC status for unary and server-streaming async handlers."""

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            check_no_nul(request)
            return await method(self, request, context)
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
        except psycopg.OperationalError:  # PostgreSQL away or restarting, or no connection free in time
            await context.abort(grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE)

    @functools.wraps(method)
    async def streaming(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            check_no_nul(request)
            async for item in method(self, request, context):
                yield item
        except RequestError as exc:
            await context.abort(exc.code, str(exc))
        except psycopg.OperationalError:
            await context.abort(grpc.StatusCode.UNAVAILABLE, DATABASE_UNAVAILABLE)

    return streaming if inspect.isasyncgenfunction(method) else unary  # type: ignore[return-value]


Handler = Callable[..., Awaitable[Any]]
