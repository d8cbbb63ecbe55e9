"""The credit website's aiohttp application: wiring, middleware, health and metrics.

:func:`create_website_app` builds the application from its dependencies (the repository, the
publisher's token, a Prometheus registry, and a clock for tests); :func:`run_website` is the
entry point, the only place that turns :class:`~streams.settings.Settings` into those.

Routes::

    PUT|DELETE|GET /api/v1/publications/{publication_id}   publication API (website.api)
    GET /  /search  /penalties  /licences  /blacklist  /redlist  /publications/{id}   pages
    GET /metrics  /health/live  /health/ready
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from pydantic import SecretStr

from streams.settings import Settings
from website.api import PublicationApi, error_response, json_response
from website.metrics import WebsiteMetrics
from website.model import MAX_BODY_BYTES
from website.pages import content_security_policy, render_error
from website.portal import PageError, PublicPortal, error_page, html_response
from website.repository import PublicationRepository, open_repository

logger = logging.getLogger(__name__)

READINESS_TIMEOUT_SECONDS: Final = 2.0
"""How long /health/ready waits for the database before answering 503."""
IDEMPOTENCY_KEY_RETENTION: Final = timedelta(days=30)
"""How long a replayed Idempotency-Key still gets the first answer. Far longer than any
publisher retry; after it, the revision check alone keeps a late replay harmless."""
IDEMPOTENCY_PURGE_INTERVAL_SECONDS: Final = 3600.0

_SECURITY_HEADERS: Final = {
    "Content-Security-Policy": content_security_policy(),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def _route_of(request: web.Request) -> str:
    """The route template that matched, e.g. ``/publications/{publication_id}``: a bounded
    label, unlike the raw path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def _response_for_http_error(request: web.Request, error: web.HTTPException) -> web.Response:
    """aiohttp's own errors (unknown route, wrong method, body too large) in the site's format:
    JSON under /api/, a Chinese page elsewhere."""
    if _is_api(request):
        response = error_response(
            error.status, error.reason.upper().replace(" ", "_"), error.reason
        )
    else:
        response = html_response(render_error(error.status), error.status)
    if "Allow" in error.headers:
        response.headers["Allow"] = error.headers["Allow"]
    return response


def _observe(metrics: WebsiteMetrics) -> Middleware:
    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Turn errors into pages or JSON, and count every request by route and status."""
        started = time.perf_counter()
        try:
            response = await handler(request)
        except PageError as error:
            response = error_page(error)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            response = _response_for_http_error(request, error)
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            if _is_api(request):
                response = error_response(500, "INTERNAL_ERROR", "internal error")
            else:
                response = html_response(render_error(500), 500)
        route = _route_of(request)
        metrics.requests.labels(route=route, status=str(response.status)).inc()
        metrics.request_duration.labels(route=route).observe(time.perf_counter() - started)
        return response

    return observe


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # Withdrawals must disappear at once: caches revalidate every page.
    response.headers.setdefault("Cache-Control", "no-cache")
    # Instead of aiohttp's default, which names the Python and aiohttp versions.
    response.headers["Server"] = "credit-website"


async def _purge_idempotency_keys(
    repository: PublicationRepository, clock: Callable[[], datetime]
) -> None:
    while True:
        try:
            removed = await repository.purge_idempotency_keys(clock() - IDEMPOTENCY_KEY_RETENTION)
            if removed:
                logger.info("forgot %d idempotency keys older than the retention", removed)
        except Exception:
            logger.exception("purging old idempotency keys failed; retrying later")
        await asyncio.sleep(IDEMPOTENCY_PURGE_INTERVAL_SECONDS)


def _lifecycle(
    repository: PublicationRepository, clock: Callable[[], datetime]
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await repository.start()
        logger.info("website database: %s", repository.description)
        purge = asyncio.create_task(_purge_idempotency_keys(repository, clock))
        try:
            yield
        finally:
            purge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purge
            await repository.close()

    return lifecycle


def create_website_app(
    db: PublicationRepository,
    api_token: str | SecretStr,
    registry: CollectorRegistry,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> web.Application:
    """The website, ready for :func:`aiohttp.web.run_app` or a test server.

    The application opens the repository on start-up (creating or migrating the schema) and
    closes it on clean-up.

    :param db: where publications are kept.
    :param api_token: the bearer token the publisher presents; must not be empty.
    :param registry: where the website's metrics are registered.
    :param clock: the current instant (aware); "today" for publication periods is its date in
        China.
    """
    token = api_token.get_secret_value() if isinstance(api_token, SecretStr) else api_token
    if not token.strip():
        raise ValueError("the website API token must not be empty")
    metrics = WebsiteMetrics.create(registry)

    async def metrics_page(request: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def live(request: web.Request) -> web.Response:
        return json_response(200, {"status": "ok"})

    async def ready(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(db.ping(), READINESS_TIMEOUT_SECONDS)
        except Exception:
            logger.warning("not ready: the database does not answer", exc_info=True)
            return json_response(503, {"status": "unavailable", "database": "not answering"})
        return json_response(200, {"status": "ready", "database": "ok"})

    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_observe(metrics)])
    app.add_routes(PublicationApi(db, token.encode(), metrics, clock).routes())
    app.add_routes(PublicPortal(db, clock).routes())
    app.add_routes(
        [
            web.get("/metrics", metrics_page),
            web.get("/health/live", live),
            web.get("/health/ready", ready),
        ]
    )
    app.cleanup_ctx.append(_lifecycle(db, clock))
    app.on_response_prepare.append(_add_security_headers)
    return app


class PathAccessLogger(AbstractAccessLogger):
    """Access log without query strings: searches are people's and companies' names."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.1f ms", request.method, request.path, response.status, time * 1000
        )


_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})


def run_website(settings: Settings) -> None:
    """Serve the website on ``bind_host:website_port`` until SIGINT/SIGTERM.

    :raises NotImplementedError: when ``website_database_url`` asks for PostgreSQL (see
        :func:`website.repository.open_repository`).
    """
    repository = open_repository(settings)
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    default_token = Settings.model_fields["website_api_token"].default
    if settings.website_api_token == default_token and settings.bind_host not in _LOOPBACK_HOSTS:
        logger.warning(
            "the website listens on %s with the default API token: set CREDIT_WEBSITE_API_TOKEN",
            settings.bind_host,
        )
    app = create_website_app(repository, settings.website_api_token, registry)
    logger.info(
        "credit website on http://%s:%d (%s)",
        settings.bind_host,
        settings.website_port,
        repository.description,
    )
    web.run_app(
        app,
        host=settings.bind_host,
        port=settings.website_port,
        print=None,
        access_log=logging.getLogger("website.access"),
        access_log_class=PathAccessLogger,
    )
