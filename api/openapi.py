"""The OpenAPI 3 document of the query API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from api.queries import MAX_BATCH
from processors.model import PlateColour
from sinks.serving_store import NOT_LISTED, STATUS_PRECEDENCE

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer"},
            }
        }
    return response


_LOOKUP_ERRORS = {
    "400": _error("An identifier is malformed: the error names the field and the reason code."),
    "401": _error("No valid API key."),
    "403": _error("The key lacks the scope (basic or evidence) the request needs."),
    "429": _error("The key's rate limit is exceeded.", retry_after=True),
    "503": _error(
        "The serving store cannot answer (Redis down, or loading): never read as 'not listed'.",
        retry_after=True,
    ),
}

_DETAIL = {
    "name": "detail",
    "in": "query",
    "required": False,
    "description": "basic or evidence; the highest scope the key holds when omitted.",
    "schema": {"type": "string", "enum": ["basic", "evidence"]},
}


def _lookup(summary: str, parameters: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "tags": [tag],
            "parameters": [*parameters, _DETAIL],
            "responses": {
                "200": {
                    "description": "The answer; an unknown subject is known: false, not listed.",
                    "content": {"application/json": {"schema": _ref("Answer")}},
                },
                **_LOOKUP_ERRORS,
            },
        }
    }


def _list_status() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["listed", "status", "rules"],
        "properties": {
            "listed": {"type": "boolean"},
            "status": {
                "type": "string",
                "enum": [*STATUS_PRECEDENCE, NOT_LISTED],
                "description": "The list's status: the first of its rules' statuses in the "
                "order of the enum (docs/lifecycle.md). listed is true only for published and "
                "listed: a proposed blacklisting (10 working days' notice) is not yet in force.",
            },
            "rules": {"type": "array", "items": _ref("Rule")},
        },
    }


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document."""
    lists = {name: _ref("ListStatus") for name in ("blacklist", "watchlist", "red_list")}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "credit-transport law-enforcement query API",
            "version": "1",
            "description": "Is a truck, its carrier or its driver on the blacklist (严重失信), "
            "the watchlist (重点关注) or the red list (守信激励), and why. Answers come from the "
            "Redis serving store; as_of says how fresh it is. Every lookup is audited.",
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/vehicles/{plate}": _lookup(
                "A vehicle, with its carrier and recent drivers",
                [
                    {
                        "name": "plate",
                        "in": "path",
                        "required": True,
                        "description": "Plate number, e.g. 鲁P12345 (URL-encoded).",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "colour",
                        "in": "query",
                        "required": False,
                        "description": "Plate colour; YELLOW (trucks) by default, YELLOW_GREEN "
                        "for a large new-energy plate.",
                        "schema": {"type": "string", "enum": [c.value for c in PlateColour]},
                    },
                ],
                "vehicles",
            ),
            "/v1/carriers/{uscc}": _lookup(
                "A carrier by unified social credit code",
                [
                    {
                        "name": "uscc",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 18, "maxLength": 18},
                    }
                ],
                "carriers",
            ),
            "/v1/drivers/{id_number}": _lookup(
                "A driver by resident ID number",
                [
                    {
                        "name": "id_number",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "minLength": 18, "maxLength": 18},
                    }
                ],
                "drivers",
            ),
            "/v1/lookup": {
                "post": {
                    "summary": f"Up to {MAX_BATCH} subjects in one request",
                    "tags": ["batch"],
                    "parameters": [_DETAIL],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("BatchRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "One answer per query, in order.",
                            "content": {"application/json": {"schema": _ref("BatchAnswer")}},
                        },
                        **_LOOKUP_ERRORS,
                    },
                }
            },
            "/v1/audit": {
                "get": {
                    "summary": "The audit log, newest first (scope audit)",
                    "tags": ["audit"],
                    "parameters": [
                        {"name": "count", "in": "query", "schema": {"type": "integer"}},
                        {"name": "before", "in": "query", "schema": {"type": "string"}},
                        {"name": "agency", "in": "query", "schema": {"type": "string"}},
                        {"name": "identifier", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "Audit entries.",
                            "content": {"application/json": {"schema": _ref("AuditPage")}},
                        },
                        "401": _error("No valid API key."),
                        "403": _error("The key lacks the audit scope."),
                        "429": _error("The key's rate limit is exceeded.", retry_after=True),
                        "503": _error("Redis is down.", retry_after=True),
                    },
                }
            },
            "/health/live": {
                "get": {
                    "summary": "The process runs",
                    "security": [],
                    "responses": {"200": {"description": "Live."}},
                }
            },
            "/health/ready": {
                "get": {
                    "summary": "Redis answers PING and the store is loaded",
                    "security": [],
                    "responses": {
                        "200": {"description": "Ready: lookups can be answered."},
                        "503": {"description": "Redis down, or the store loading."},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {"200": {"description": "Prometheus text format."}},
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": {
                "Rule": {
                    "type": "object",
                    "required": ["rule_id", "status"],
                    "properties": {
                        "rule_id": {"type": "string", "examples": ["overload.vehicle"]},
                        "status": {"type": "string", "enum": list(STATUS_PRECEDENCE)},
                        "disputed": {
                            "type": "boolean",
                            "description": "an objection (异议) against it is open",
                        },
                        "notice_ends": {
                            "type": ["string", "null"],
                            "format": "date",
                            "description": "evidence scope: last day of the pre-publication "
                            "notice (proposed blacklist entries)",
                        },
                        "published_on": {
                            "type": ["string", "null"],
                            "format": "date",
                            "description": "evidence scope: first day on the credit website",
                        },
                        "public_until": {
                            "type": ["string", "null"],
                            "format": "date",
                            "description": "evidence scope: last day on the credit website",
                        },
                        "policy_version": {"type": "string", "description": "evidence scope"},
                        "since": {"type": "string", "description": "evidence scope"},
                        "reason": {"type": "string", "description": "evidence scope"},
                        "evidence_event_ids": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "evidence scope",
                        },
                        "evidence_violation_ids": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "evidence scope",
                        },
                    },
                },
                "ListStatus": _list_status(),
                "Subject": {
                    "type": "object",
                    "required": ["subject", "known", "listed", "lists"],
                    "properties": {
                        "subject": {
                            "type": "string",
                            "description": "KIND:key; a driver's ID number is masked outside "
                            "the evidence scope.",
                        },
                        "known": {
                            "type": "boolean",
                            "description": "false: no credit file, so on no list",
                        },
                        "listed": {"type": "boolean", "description": "on any list"},
                        "lists_on": {"type": "array", "items": {"type": "string"}},
                        "as_of": {"type": "string", "description": "when the file was judged"},
                        "policy_version": {"type": "string"},
                        "grade": {"type": "string", "enum": ["AA", "A", "B", "C", "D"]},
                        "score": {"type": "integer"},
                        "lists": {"type": "object", "properties": lists},
                    },
                },
                "Answer": {
                    "type": "object",
                    "required": ["as_of", "query", "subject"],
                    "properties": {
                        "as_of": {
                            "type": "string",
                            "description": "Newest snapshot written to the serving store.",
                        },
                        "store": {
                            "type": "object",
                            "properties": {
                                "written_at": {"type": "string"},
                                "caught_up_at": {"type": "string"},
                            },
                        },
                        "scope": {"type": "string", "enum": ["basic", "evidence"]},
                        "query": {"type": "object"},
                        "subject": _ref("Subject"),
                        "carrier": {"oneOf": [_ref("Subject"), {"type": "null"}]},
                        "drivers": {"type": "array", "items": _ref("Subject")},
                        "triggers": {
                            "type": "object",
                            "description": "evidence scope: latest list triggers by subject",
                        },
                    },
                },
                "BatchRequest": {
                    "type": "object",
                    "required": ["queries"],
                    "properties": {
                        "queries": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": MAX_BATCH,
                            "items": {
                                "type": "object",
                                "required": ["kind"],
                                "properties": {
                                    "kind": {
                                        "type": "string",
                                        "enum": ["vehicle", "carrier", "driver"],
                                    },
                                    "plate": {"type": "string"},
                                    "colour": {"type": "string"},
                                    "uscc": {"type": "string"},
                                    "id_number": {"type": "string"},
                                },
                            },
                        }
                    },
                },
                "BatchAnswer": {
                    "type": "object",
                    "properties": {
                        "as_of": {"type": "string"},
                        "scope": {"type": "string"},
                        "answers": {"type": "array", "items": _ref("Answer")},
                    },
                },
                "AuditPage": {
                    "type": "object",
                    "properties": {
                        "entries": {"type": "array", "items": {"type": "object"}},
                        "next_before": {"type": ["string", "null"]},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "examples": ["PLATE_INVALID"]},
                                "message": {"type": "string"},
                                "field": {"type": "string", "examples": ["plate"]},
                                "errors": {"type": "array", "items": {"type": "object"}},
                            },
                        }
                    },
                },
            },
        },
    }
