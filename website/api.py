"""The publication API: how the publisher puts 双公示 records and list entries on the website.

``PUT /api/v1/publications/{publication_id}``
    Store or replace a publication. Needs ``Authorization: Bearer <token>`` and an
    ``Idempotency-Key``. 201 ``created``; 200 ``replaced``, ``republished`` or ``stale`` (a lower
    revision than stored: acknowledged, ignored); 200 with the first answer when the key is
    replayed (header ``Idempotent-Replayed: true``).
``DELETE /api/v1/publications/{publication_id}``
    Withdraw it (body ``{"reason": ..., "revision": n}``). 200 ``withdrawn`` or ``stale``; 404
    ``not_found`` when the website never had it.
``GET /api/v1/publications/{publication_id}``
    The stored record with its ``status`` (``published``, ``withdrawn``, ``expired``).

Errors are JSON ``{"status": "error", "reason": CODE, "message": ..., "field": ...}``: 400 for a
missing or malformed Idempotency-Key, 401 without a valid token, 413 for a body over 64 KiB, 422
for a body the rules refuse (including ``UNMASKED_PERSONAL_DATA`` and ``IDEMPOTENCY_KEY_REUSED``).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from website.metrics import WebsiteMetrics
from website.model import (
    CHINA_TIME,
    INVALID_PUBLICATION_ID,
    MALFORMED_BODY,
    MAX_BODY_BYTES,
    UNMASKED_PERSONAL_DATA,
    ApiResponse,
    IdempotencyKey,
    InvalidRequestError,
    is_valid_idempotency_key,
    is_valid_publication_id,
    parse_publication,
    parse_withdrawal,
    publication_record,
    request_hash,
    texts_to_screen,
)
from website.privacy import find_unmasked_personal_data
from website.repository import IdempotencyKeyReusedError, PublicationRepository

logger = logging.getLogger(__name__)

PUBLICATION_ROUTE: Final = "/api/v1/publications/{publication_id}"

UNAUTHORISED = "UNAUTHORISED"
IDEMPOTENCY_KEY_MISSING = "IDEMPOTENCY_KEY_MISSING"
IDEMPOTENCY_KEY_INVALID = "IDEMPOTENCY_KEY_INVALID"
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
BODY_TOO_LARGE = "BODY_TOO_LARGE"
NOT_FOUND = "NOT_FOUND"

_BEARER_PREFIX = "bearer "


def json_response(status: int, body: Mapping[str, Any], **headers: str) -> web.Response:
    """A JSON response that no cache keeps."""
    response = web.Response(
        status=status, body=orjson.dumps(dict(body)), content_type="application/json"
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers)
    return response


def error_response(
    status: int, reason: str, message: str, field: str | None = None, **headers: str
) -> web.Response:
    """The API's error body."""
    body: dict[str, Any] = {"status": "error", "reason": reason, "message": message}
    if field is not None:
        body["field"] = field
    return json_response(status, body, **headers)


def is_authorised(header: str | None, token: bytes) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>``, compared in constant
    time (the comparison does not reveal how much of a wrong token was right)."""
    if header is None or header[: len(_BEARER_PREFIX)].lower() != _BEARER_PREFIX:
        return False
    presented = header[len(_BEARER_PREFIX) :].strip().encode()
    return hmac.compare_digest(presented, token)


class RequestRejectedError(Exception):
    """Ends a request early with an error response."""

    def __init__(self, response: web.Response, action_kind: str = "unknown") -> None:
        super().__init__(response.status)
        self.response = response
        self.action_kind = action_kind


@dataclass(frozen=True, slots=True)
class PublicationApi:
    """The handlers of the publication API."""

    repository: PublicationRepository
    token: bytes
    metrics: WebsiteMetrics
    clock: Callable[[], datetime]

    def routes(self) -> list[web.RouteDef]:
        return [
            web.put(PUBLICATION_ROUTE, self.put),
            web.delete(PUBLICATION_ROUTE, self.delete),
            web.get(PUBLICATION_ROUTE, self.get, allow_head=False),
        ]

    # --- request checks -------------------------------------------------------------------------

    def _authorise(self, request: web.Request) -> None:
        if not is_authorised(request.headers.get("Authorization"), self.token):
            raise RequestRejectedError(
                error_response(
                    401,
                    UNAUTHORISED,
                    "a valid 'Authorization: Bearer <token>' header is required",
                    **{"WWW-Authenticate": 'Bearer realm="credit-website"'},
                )
            )

    @staticmethod
    def _publication_id(request: web.Request) -> str:
        publication_id = request.match_info["publication_id"]
        if not is_valid_publication_id(publication_id):
            raise RequestRejectedError(
                error_response(
                    422,
                    INVALID_PUBLICATION_ID,
                    "publication ids are 1 to 128 of A-Z a-z 0-9 . _ : -, starting with a "
                    "letter or digit",
                    "publication_id",
                )
            )
        return publication_id

    @staticmethod
    def _idempotency_key(request: web.Request) -> str:
        key = request.headers.get("Idempotency-Key")
        if key is None or not key.strip():
            raise RequestRejectedError(
                error_response(
                    400, IDEMPOTENCY_KEY_MISSING, "the Idempotency-Key header is required"
                )
            )
        if not is_valid_idempotency_key(key):
            raise RequestRejectedError(
                error_response(
                    400,
                    IDEMPOTENCY_KEY_INVALID,
                    "the Idempotency-Key must be 1 to 255 visible ASCII characters",
                )
            )
        return key

    @staticmethod
    async def _json_body(request: web.Request) -> object:
        too_large = error_response(
            413, BODY_TOO_LARGE, f"the body must not exceed {MAX_BODY_BYTES} bytes"
        )
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise RequestRejectedError(too_large)
        try:
            # The application's client_max_size is MAX_BODY_BYTES: a chunked body that grows
            # past it stops here too.
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RequestRejectedError(too_large) from None
        if not raw.strip():
            raise RequestRejectedError(
                error_response(422, MALFORMED_BODY, "a JSON body is required")
            )
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise RequestRejectedError(
                error_response(422, MALFORMED_BODY, "the body is not valid JSON (UTF-8)")
            ) from None

    def _count(self, response: ApiResponse) -> None:
        kind = response.kind.value if response.kind else "unknown"
        self.metrics.publications.labels(kind=kind, action=response.action).inc()

    def _rejected(self, response: web.Response, kind: str = "unknown") -> web.Response:
        self.metrics.publications.labels(kind=kind, action="rejected").inc()
        return response

    @staticmethod
    def _answer(response: ApiResponse) -> web.Response:
        headers = {"Idempotent-Replayed": "true"} if response.replayed else {}
        return json_response(response.status, response.body, **headers)

    def _today(self) -> date:
        return self.clock().astimezone(CHINA_TIME).date()

    # --- handlers -------------------------------------------------------------------------------

    async def put(self, request: web.Request) -> web.Response:
        """Store or replace a publication."""

        async def store() -> ApiResponse:
            self._authorise(request)
            publication_id = self._publication_id(request)
            key = self._idempotency_key(request)
            body = await self._json_body(request)
            content = parse_publication(publication_id, body)
            finding = find_unmasked_personal_data(texts_to_screen(publication_id, content))
            if finding is not None:
                logger.warning(
                    "refused publication %s: %s holds an unmasked %s",
                    publication_id,
                    finding.field,
                    finding.what,
                )
                raise RequestRejectedError(
                    error_response(
                        422,
                        UNMASKED_PERSONAL_DATA,
                        f"{finding.field} holds what looks like an unmasked {finding.what}; "
                        "mask personal data before publishing",
                        finding.field,
                    ),
                    content.kind.value,
                )
            idempotency = IdempotencyKey(key, request_hash("PUT", publication_id, body))
            return await self.repository.put_publication(
                publication_id, content, idempotency, self.clock()
            )

        return await self._write(store)

    async def delete(self, request: web.Request) -> web.Response:
        """Withdraw a publication."""

        async def withdraw() -> ApiResponse:
            self._authorise(request)
            publication_id = self._publication_id(request)
            key = self._idempotency_key(request)
            body = await self._json_body(request)
            withdrawal = parse_withdrawal(body)
            idempotency = IdempotencyKey(key, request_hash("DELETE", publication_id, body))
            return await self.repository.withdraw_publication(
                publication_id, withdrawal, idempotency, self.clock()
            )

        return await self._write(withdraw)

    async def _write(self, work: Callable[[], Awaitable[ApiResponse]]) -> web.Response:
        """Run a PUT or DELETE: its refusals as error answers, its result counted."""
        try:
            response = await work()
        except RequestRejectedError as rejection:
            return self._rejected(rejection.response, rejection.action_kind)
        except InvalidRequestError as invalid:
            return self._rejected(
                error_response(422, invalid.reason, invalid.message, invalid.field)
            )
        except IdempotencyKeyReusedError:
            return self._rejected(self._key_reused())
        self._count(response)
        return self._answer(response)

    async def get(self, request: web.Request) -> web.Response:
        """The stored record, for the publisher's reconciliation."""
        try:
            self._authorise(request)
            publication_id = self._publication_id(request)
        except RequestRejectedError as rejection:
            return rejection.response
        stored = await self.repository.get_publication(publication_id)
        if stored is None:
            return error_response(404, NOT_FOUND, "no publication with this id")
        return json_response(200, publication_record(stored, self._today()))

    @staticmethod
    def _key_reused() -> web.Response:
        return error_response(
            422,
            IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was already used for a different request",
        )
