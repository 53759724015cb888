"""An ASGI middleware that rejects request bodies over 64 KiB with 413 payload_too_large."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

# Every request body of the API is a small JSON object or form. The largest valid one, a
# handoff request with 50 sources, is a few KiB.
MAX_BODY_BYTES = 64 * 1024
TOO_LARGE_CODE = "payload_too_large"
# The unread rest of a refused body would be taken for the next request on the connection,
# so the server is asked to close it.
_CLOSE = {"Connection": "close"}


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body read so far exceeds the limit.

    It is an HTTPException so that FastAPI passes it on instead of turning it into a 400
    while parsing a form, and the API's HTTPException handler gives it the error body.
    """

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(max_body_bytes), headers=_CLOSE)


def too_large_message(max_body_bytes: int) -> str:
    """Return the message of the 413 response."""
    return f"request body too large: the limit is {max_body_bytes} bytes; send a smaller body"


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class BodyLimitMiddleware:
    """Caps the request body at `max_body_bytes`, with or without a Content-Length header.

    A declared length over the limit is rejected at once, before the application runs. A
    chunked body, or one longer than declared, is counted as the application reads it, and
    reading past the limit raises `BodyTooLarge`.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._reject(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            # Normally the API's HTTPException handler has already sent the 413. This
            # catches a read outside the routes, such as in another middleware.
            if response_started:
                raise
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, TOO_LARGE_CODE, too_large_message(self.max_body_bytes), headers=_CLOSE
        )
        await response(scope, receive, send)
