"""API keys, scopes and the per-key token bucket (api/auth.py), without a server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from api.auth import (
    MAX_KEY_LENGTH,
    KeyFileError,
    KeyRegistry,
    RateLimiter,
    Scope,
    TokenBucket,
    hash_key,
    presented_key,
)

POLICE_KEY = "s3cr3t-police-key"
AUDIT_KEY = "s3cr3t-audit-key"


def _file(**overrides: object) -> dict[str, object]:
    police = {
        "id": "police",
        "agency": "东阿县公安局交通警察大队",
        "sha256": hash_key(POLICE_KEY),
        "scopes": ["basic"],
        "rate_per_second": 20,
    } | overrides
    auditor = {
        "id": "audit",
        "agency": "东阿县交通运输局",
        "sha256": hash_key(AUDIT_KEY).upper(),  # hex digits in either case
        "scopes": ["evidence", "audit"],
    }
    return {"keys": [police, auditor]}


def test_a_key_file_parses_into_keys_with_scopes_and_rates(tmp_path: Path) -> None:
    """Digests, scopes and the default rate for a key that sets none."""
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(_file(), ensure_ascii=False), encoding="utf-8")
    registry = KeyRegistry.from_file(path, default_rate=200.0)
    police, auditor = registry.keys
    assert police.scopes == frozenset({Scope.BASIC}) and police.rate_per_second == 20.0
    assert auditor.rate_per_second == 200.0
    assert auditor.digest == hash_key(AUDIT_KEY)
    assert auditor.allows(Scope.BASIC)  # evidence includes basic
    assert not police.allows(Scope.EVIDENCE) and not police.allows(Scope.AUDIT)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sha256": "abc"}, "keys[0].sha256: expected 64 hex digits"),
        ({"sha256": POLICE_KEY}, "keys[0].sha256"),  # a key in clear is refused
        ({"scopes": []}, "keys[0].scopes: expected a non-empty list"),
        ({"scopes": ["admin"]}, "keys[0].scopes: each must be one of"),
        ({"rate_per_second": 0}, "keys[0].rate_per_second: expected a positive number"),
        ({"rate_per_second": True}, "keys[0].rate_per_second"),
        ({"agency": " "}, "keys[0].agency: expected a non-empty string"),
        ({"id": "audit"}, "keys[1].id: used by an earlier key"),
        ({"sha256": hash_key(AUDIT_KEY)}, "keys[1].sha256: used by an earlier key"),
        ({"key": "plain"}, "keys[0]: unknown fields ['key']"),
    ],
)
def test_an_invalid_key_file_names_the_entry_and_field(
    overrides: dict[str, object], message: str
) -> None:
    """The error says which key and which field is wrong."""
    with pytest.raises(KeyFileError, match=re.escape(message)):
        KeyRegistry.parse(_file(**overrides), default_rate=10)


def test_a_key_file_that_is_not_json_is_an_error(tmp_path: Path) -> None:
    """The path is named."""
    path = tmp_path / "keys.json"
    path.write_text("{", encoding="utf-8")
    with pytest.raises(KeyFileError, match=r"keys\.json"):
        KeyRegistry.from_file(path, default_rate=10)


def test_authenticate_accepts_only_a_key_whose_digest_is_listed() -> None:
    """The right key, not a wrong, empty, digest-as-key or overlong one."""
    registry = KeyRegistry.parse(_file(), default_rate=10)
    key = registry.authenticate(POLICE_KEY)
    assert key is not None and key.key_id == "police"
    assert registry.authenticate("wrong") is None
    assert registry.authenticate("") is None
    assert registry.authenticate(None) is None
    assert registry.authenticate(hash_key(POLICE_KEY)) is None
    assert registry.authenticate("x" * (MAX_KEY_LENGTH + 1)) is None


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer  abc ", None, "abc"),
        ("Basic abc", "xyz", None),  # a wrong scheme is not silently replaced by X-API-Key
        (None, "xyz", "xyz"),
        ("Bearer ", None, None),
        (None, " ", None),
        (None, None, None),
    ],
)
def test_presented_key_reads_bearer_or_x_api_key(
    authorization: str | None, x_api_key: str | None, expected: str | None
) -> None:
    """Authorization: Bearer first, else X-API-Key."""
    assert presented_key(authorization, x_api_key) == expected


@pytest.mark.parametrize(
    ("rate", "times", "allowed"),
    [
        (2.0, [0.0, 0.0, 0.0], [True, True, False]),  # a burst of one second's worth
        (2.0, [0.0, 0.0, 0.0, 0.5], [True, True, False, True]),  # half a second refills one
        (0.5, [0.0, 0.0, 1.0, 2.0], [True, False, False, True]),  # burst of at least one token
        (100.0, [0.0] * 100 + [0.0], [True] * 100 + [False]),
    ],
)
def test_token_bucket_allows_rate_and_burst(
    rate: float, times: list[float], allowed: list[bool]
) -> None:
    """Requests at the given instants are allowed or refused."""
    bucket = TokenBucket.full(rate, 0.0)
    assert [bucket.take(t) == 0.0 for t in times] == allowed


def test_a_refused_request_is_told_how_long_to_wait() -> None:
    """The wait is the time until one whole token is back."""
    bucket = TokenBucket.full(4.0, 0.0)
    for _ in range(4):
        bucket.take(0.0)
    assert bucket.take(0.0) == pytest.approx(0.25)
    assert bucket.take(0.125) == pytest.approx(0.125)


def test_rate_limiter_keeps_one_bucket_per_key() -> None:
    """One key's burst does not use up another's."""
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    registry = KeyRegistry.parse(_file(rate_per_second=1), default_rate=1)
    police, auditor = registry.keys
    assert limiter.wait(police) == 0.0
    assert limiter.wait(police) > 0.0
    assert limiter.wait(auditor) == 0.0
    now[0] = 1.0
    assert limiter.wait(police) == 0.0


def test_a_key_that_authenticated_is_remembered_and_nothing_else_is() -> None:
    """The next requests of a valid key skip the hash; wrong keys are hashed every time and never
    remembered, so they cannot grow the memory."""
    registry = KeyRegistry.parse(_file(), default_rate=200.0)
    police = registry.authenticate(POLICE_KEY)
    assert police is not None and police.key_id == "police"
    assert registry.authenticate(POLICE_KEY) is police
    for n in range(100):
        assert registry.authenticate(f"{POLICE_KEY}-{n}") is None
    assert registry.authenticate(AUDIT_KEY) is not None
    remembered = registry._authenticated
    assert set(remembered) == {POLICE_KEY, AUDIT_KEY}
    assert registry.authenticate("x" * (MAX_KEY_LENGTH + 1)) is None
    assert registry.authenticate("") is None and registry.authenticate(None) is None
    # Two registries never share what they remember (a reloaded key file starts afresh).
    assert KeyRegistry.parse(_file(), default_rate=200.0)._authenticated == {}
