"""The OpenAPI document describes every route the app serves, and its references resolve."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from api.app import SERVED, create_api_handler
from api.auth import KeyRegistry
from api.openapi import openapi_document
from api.store import StoreReader


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_route_is_documented_with_described_responses() -> None:
    """Paths and methods the API's router serves, each response with a description."""
    store = StoreReader(Redis())  # never connects: the handler is only built
    create_api_handler(store, KeyRegistry(()), CollectorRegistry())  # checks its routes: SERVED
    document = openapi_document()
    served = {(path, method.lower()) for path, method in SERVED}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert served - {("/openapi.json", "get")} == documented
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                assert response.get("description"), status


def test_every_reference_resolves() -> None:
    """No dangling $ref."""
    document = openapi_document()
    schemas = document["components"]["schemas"]
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas
