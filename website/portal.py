"""The public portal's handlers: read the repository, render :mod:`website.pages`.

A page shows only records that are public today (China time): not withdrawn and not past their
publication end. A withdrawn or expired record's detail page answers 404, like one that never
existed, so that a repaired subject's old record cannot be found by its address either.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from aiohttp import web

from website.markup import Markup
from website.model import CHINA_TIME, Kind, is_valid_publication_id
from website.pages import (
    KIND_PATHS,
    SEARCH_MAX_LENGTH,
    render_detail,
    render_error,
    render_home,
    render_list,
    render_search,
)
from website.pagination import PAGE_SIZE, InvalidPageNumberError, Page, parse_page_number
from website.repository import PublicationRepository


def html_response(page: Markup, status: int = 200) -> web.Response:
    """A rendered page."""
    return web.Response(status=status, text=page, content_type="text/html", charset="utf-8")


class PageError(Exception):
    """Ends a page request with an error page."""

    def __init__(self, status: int, detail: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail


def _page_number(request: web.Request) -> int:
    try:
        return parse_page_number(request.query.get("page"))
    except InvalidPageNumberError:
        raise PageError(400, "页码应为从 1 开始的整数。") from None


@dataclass(frozen=True, slots=True)
class PublicPortal:
    """The handlers of the public pages."""

    repository: PublicationRepository
    clock: Callable[[], datetime]

    def routes(self) -> list[web.RouteDef]:
        routes = [
            web.get("/", self.home),
            web.get("/search", self.search),
            web.get("/publications/{publication_id}", self.detail),
        ]
        routes += [web.get(path, self._list_handler(kind)) for kind, path in KIND_PATHS.items()]
        return routes

    def _today(self) -> date:
        return self.clock().astimezone(CHINA_TIME).date()

    async def home(self, request: web.Request) -> web.Response:
        counts = await self.repository.count_public(self._today())
        return html_response(render_home(counts))

    def _list_handler(
        self, kind: Kind
    ) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            return await self.list_page(request, kind)

        return handler

    async def list_page(self, request: web.Request, kind: Kind) -> web.Response:
        number = _page_number(request)
        total, records = await self.repository.list_public(
            kind, self._today(), PAGE_SIZE, (number - 1) * PAGE_SIZE
        )
        page = Page(number, total)
        if not page.exists:
            raise PageError(404, f"共 {page.count} 页，没有第 {number} 页。")
        return html_response(render_list(kind, page, records))

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "").strip()[:SEARCH_MAX_LENGTH]
        if not query:
            return html_response(render_search("", None, []))
        number = _page_number(request)
        total, records = await self.repository.search_public(
            query, self._today(), PAGE_SIZE, (number - 1) * PAGE_SIZE
        )
        page = Page(number, total)
        if not page.exists:
            raise PageError(404, f"共 {page.count} 页，没有第 {number} 页。")
        return html_response(render_search(query, page, records))

    async def detail(self, request: web.Request) -> web.Response:
        publication_id = request.match_info["publication_id"]
        if not is_valid_publication_id(publication_id):
            raise PageError(404)
        record = await self.repository.get_publication(publication_id)
        if record is None or not record.is_public(self._today()):
            raise PageError(404)
        return html_response(render_detail(record))


def error_page(error: PageError) -> web.Response:
    """The Chinese error page for ``error``."""
    return html_response(render_error(error.status, error.detail), error.status)
