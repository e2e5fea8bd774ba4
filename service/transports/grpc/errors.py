"""The one mapping from domain errors to gRPC status codes, applied by an interceptor."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.domain.errors import MarrowscopeError

Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any]"]
]

log = logging.getLogger("marrowscope.grpc")

STATUS_FOR_CODE: dict[str, grpc.StatusCode] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "missing_mpp": grpc.StatusCode.INVALID_ARGUMENT,
    "unsupported_format": grpc.StatusCode.INVALID_ARGUMENT,
    "slide_unreadable": grpc.StatusCode.INVALID_ARGUMENT,
    "slide_too_large": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "model_unavailable": grpc.StatusCode.FAILED_PRECONDITION,
    "output_error": grpc.StatusCode.FAILED_PRECONDITION,
    "cancelled": grpc.StatusCode.CANCELLED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Status code and message for an exception raised by a handler."""
    if isinstance(exc, MarrowscopeError):
        return STATUS_FOR_CODE.get(exc.code, grpc.StatusCode.INTERNAL), str(exc)
    return grpc.StatusCode.INTERNAL, "internal server error (see the server log)"


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        log.error("unexpected %s in a handler", type(exc).__name__)
        log.debug("handler traceback", exc_info=exc)
    await context.abort(code, message)


def _wrap_unary(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await fn(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error leaves as a status, not a traceback
            await _abort(context, exc)

    return handler


def _wrap_stream(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            async for item in fn(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:  # noqa: BLE001 - every error leaves as a status, not a traceback
            await _abort(context, exc)

    return handler


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Turns domain errors raised by any AnalysisService handler into status codes + messages."""

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
