"""Bearer-token authentication and role checks, as one server interceptor.

Token entries are lines ``<token> <role>[,<role>...] [name]`` (``#`` starts a comment), from the
token file and/or the ``tokens`` setting (entries separated by ``;``). Roles: ``submit``
(SubmitAnalysis, CancelAnalysis), ``read`` (Get/Watch/List/GetArtifact), ``admin`` (everything).
Only SHA-256 digests of tokens are kept in memory; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from service.domain.errors import InvalidInput
from service.transports.grpc.stubs import SERVICE_NAME

Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any]"]
]

log = logging.getLogger("marrowscope.auth")

ROLES = frozenset({"submit", "read", "admin"})
MIN_TOKEN_CHARS = 16
ROLE_FOR_METHOD = {
    "SubmitAnalysis": "submit",
    "CancelAnalysis": "submit",
    "GetAnalysis": "read",
    "WatchAnalysis": "read",
    "ListAnalyses": "read",
    "GetArtifact": "read",
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name for logs and the roles the token grants."""

    name: str
    roles: frozenset[str]

    def may(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """Known tokens (as digests) and their principals."""

    def __init__(self, entries: list[tuple[bytes, Principal]]) -> None:
        self._entries = entries

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def parse(cls, text: str, origin: str, separator: str = "\n") -> TokenTable:
        entries: list[tuple[bytes, Principal]] = []
        for number, raw in enumerate(text.split(separator), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 2:
                raise InvalidInput(f"{origin} entry {number}: expected '<token> <roles> [name]'")
            token, roles = parts[0], frozenset(r for r in parts[1].split(",") if r)
            if len(token) < MIN_TOKEN_CHARS:
                raise InvalidInput(
                    f"{origin} entry {number}: token shorter than {MIN_TOKEN_CHARS} characters"
                )
            if not roles or not roles <= ROLES:
                raise InvalidInput(
                    f"{origin} entry {number}: roles must be among {', '.join(sorted(ROLES))}"
                )
            name = parts[2] if len(parts) > 2 else f"token-{number}"
            entries.append((_digest(token), Principal(name, roles)))
        return cls(entries)

    @classmethod
    def load(cls, token_file: Path | None, inline: str) -> TokenTable:
        entries: list[tuple[bytes, Principal]] = []
        if token_file is not None:
            try:
                text = token_file.read_text()
            except OSError as exc:
                raise InvalidInput(f"cannot read token file {token_file}: {exc.strerror}") from exc
            entries += cls.parse(text, str(token_file))._entries
        if inline:
            entries += cls.parse(inline, "tokens setting", separator=";")._entries
        return cls(entries)

    def lookup(self, token: str) -> Principal | None:
        digest = _digest(token)
        found = None
        for known, principal in self._entries:  # no early exit: constant time over the table
            if hmac.compare_digest(known, digest):
                found = principal
        return found


def bearer_token(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _rejecting(
    handler: grpc.RpcMethodHandler[Any, Any], code: grpc.StatusCode, message: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as ``handler`` that fails with ``code``."""

    async def reject_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    async def reject_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            reject_stream, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.unary_unary_rpc_method_handler(
        reject_unary, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Checks ``authorization: Bearer <token>`` on every AnalysisService call.

    Health and reflection stay open (load balancers and tooling call them without tokens).
    With ``tokens=None`` authentication is disabled (explicit ``allow_unauthenticated`` only).
    """

    def __init__(self, tokens: TokenTable | None) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Continuation,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        service, _, method = handler_call_details.method.lstrip("/").partition("/")
        if service != SERVICE_NAME or self._tokens is None or handler is None:
            return handler
        token = bearer_token(handler_call_details.invocation_metadata)
        if token is None:
            return _rejecting(handler, grpc.StatusCode.UNAUTHENTICATED,
                              "missing 'authorization: Bearer <token>' metadata")
        principal = self._tokens.lookup(token)
        if principal is None:
            log.info("rejected %s: unknown token", method)
            return _rejecting(handler, grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        role = ROLE_FOR_METHOD.get(method, "admin")
        if not principal.may(role):
            log.info("rejected %s for %s: needs role %s", method, principal.name, role)
            return _rejecting(handler, grpc.StatusCode.PERMISSION_DENIED,
                              f"token {principal.name!r} lacks the {role!r} role for {method}")
        return handler
