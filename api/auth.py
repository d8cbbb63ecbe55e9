"""Per-agency API keys, scopes and per-key rate limits of the query API.

The key file (``settings.api_keys_file``) is JSON; it holds no key in clear, only its SHA-256::

    {
      "keys": [
        {
          "id": "dong-e-traffic-police",
          "agency": "东阿县公安局交通警察大队",
          "sha256": "<64 hex digits: SHA-256 of the key as the agency sends it>",
          "scopes": ["basic"],
          "rate_per_second": 20
        },
        {"id": "bureau-audit", "agency": "东阿县交通运输局", "sha256": "...",
         "scopes": ["evidence", "audit"]}
      ]
    }

- ``id``: unique; names the key in the audit log and in logs (the key itself is never logged).
- ``agency``: who holds the key, as the audit log shows it.
- ``sha256``: ``hashlib.sha256(key.encode()).hexdigest()``; :func:`hash_key` computes it. Keys
  should be long random strings (``secrets.token_urlsafe(32)``), so a fast hash is enough.
- ``scopes``: ``basic`` (list status, grade, score, rule ids), ``evidence`` (that plus reasons,
  evidence references and trigger history; implies ``basic``), ``audit`` (read the audit log).
- ``rate_per_second``: optional; the API's default (``settings.api_default_rate_per_second``)
  otherwise. Bursts of up to one second's worth are allowed.

A request presents its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Comparison: the presented key is hashed and the digest looked up, then compared with
:func:`hmac.compare_digest`. Timing can at most reveal how much of a *digest* matched, which does
not help to find a key that hashes to it.

A key that authenticated is remembered as it was presented (at most one entry per key of the
file, as :func:`presented_key` strips it), so that its next requests cost one dictionary look-up
instead of a hash: the profile of the API under load showed the hash at 1 to 2 % of a request.
Only valid keys are remembered, so invalid ones cannot grow the memory and are always hashed.
The look-up compares a presented string with a remembered key only when their ``str`` hashes
(SipHash with this process's random seed) are equal, which a caller who does not know the key
cannot arrange: no comparison of the key's characters can be timed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "MAX_KEY_LENGTH",
    "ApiKey",
    "KeyFileError",
    "KeyRegistry",
    "RateLimiter",
    "Scope",
    "TokenBucket",
    "hash_key",
    "presented_key",
]

MAX_KEY_LENGTH = 256
"""Longer credentials are refused before hashing."""

_HEX_DIGEST = re.compile("[0-9a-f]{64}")


class Scope(enum.StrEnum):
    """What a key may do."""

    BASIC = "basic"
    """Look subjects up: list status, grade, score, rule ids."""
    EVIDENCE = "evidence"
    """Look subjects up with reasons, evidence references and trigger history."""
    AUDIT = "audit"
    """Read the audit log."""


class KeyFileError(ValueError):
    """The key file is not valid; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One agency's key, as the key file describes it."""

    key_id: str
    """Names the key in the audit log."""
    agency: str
    """Who holds it."""
    digest: str
    """SHA-256 of the key, lower-case hex."""
    scopes: frozenset[Scope]
    """What it may do (``evidence`` includes ``basic``)."""
    rate_per_second: float
    """Requests per second it may make."""

    def allows(self, scope: Scope) -> bool:
        """Whether the key holds ``scope``."""
        if scope is Scope.BASIC:
            return Scope.BASIC in self.scopes or Scope.EVIDENCE in self.scopes
        return scope in self.scopes


def hash_key(key: str) -> str:
    """What the key file stores for ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>``, else ``X-API-Key``."""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
        return None
    if x_api_key:
        return x_api_key.strip() or None
    return None


@dataclass(frozen=True, slots=True)
class KeyRegistry:
    """The keys the API accepts."""

    keys: tuple[ApiKey, ...]
    _by_digest: Mapping[str, ApiKey] = field(init=False, repr=False, compare=False)
    _authenticated: dict[str, ApiKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_digest", {key.digest: key for key in self.keys})
        object.__setattr__(self, "_authenticated", {})

    @classmethod
    def parse(cls, data: object, *, default_rate: float) -> KeyRegistry:
        """Keys from the decoded key file.

        :raises KeyFileError: naming the first problem found.
        """
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise KeyFileError('expected an object with a "keys" list')
        keys: list[ApiKey] = []
        for index, entry in enumerate(data["keys"]):
            keys.append(_parse_key(entry, f"keys[{index}]", default_rate))
        _unique(keys, lambda k: k.key_id, "id")
        _unique(keys, lambda k: k.digest, "sha256")
        return cls(tuple(keys))

    @classmethod
    def from_file(cls, path: Path, *, default_rate: float) -> KeyRegistry:
        """Keys from a key file.

        :raises KeyFileError: when the file cannot be read or is not valid.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise KeyFileError(f"{path}: {exc}") from exc
        try:
            return cls.parse(data, default_rate=default_rate)
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from exc

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The key ``presented`` is, or None."""
        if not presented:
            return None
        key = self._authenticated.get(presented)
        if key is not None:
            return key
        if len(presented) > MAX_KEY_LENGTH:
            return None
        digest = hashlib.sha256(presented.encode()).hexdigest()
        key = self._by_digest.get(digest)
        if key is None or not hmac.compare_digest(key.digest, digest):
            return None
        if len(self._authenticated) < 2 * len(self.keys):  # bounded, whatever callers do
            self._authenticated[presented] = key
        return key


def _parse_key(entry: object, where: str, default_rate: float) -> ApiKey:
    if not isinstance(entry, dict):
        raise KeyFileError(f"{where}: expected an object")
    unknown = set(entry) - {"id", "agency", "sha256", "scopes", "rate_per_second"}
    if unknown:
        raise KeyFileError(f"{where}: unknown fields {sorted(unknown)}")
    key_id = _text(entry, "id", where)
    agency = _text(entry, "agency", where)
    digest = _text(entry, "sha256", where).lower()
    if not _HEX_DIGEST.fullmatch(digest):
        raise KeyFileError(f"{where}.sha256: expected 64 hex digits (a SHA-256 digest)")
    raw_scopes = entry.get("scopes")
    if not isinstance(raw_scopes, list) or not raw_scopes:
        raise KeyFileError(f"{where}.scopes: expected a non-empty list")
    try:
        scopes = frozenset(Scope(str(s)) for s in raw_scopes)
    except ValueError as exc:
        names = ", ".join(s.value for s in Scope)
        raise KeyFileError(f"{where}.scopes: each must be one of {names}") from exc
    rate = entry.get("rate_per_second", default_rate)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
        raise KeyFileError(f"{where}.rate_per_second: expected a positive number")
    if not math.isfinite(rate):
        raise KeyFileError(f"{where}.rate_per_second: expected a finite number")
    return ApiKey(key_id, agency, digest, scopes, float(rate))


def _text(entry: Mapping[str, Any], name: str, where: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value.strip():
        raise KeyFileError(f"{where}.{name}: expected a non-empty string")
    return value.strip()


def _unique(keys: Iterable[ApiKey], attribute: Callable[[ApiKey], str], name: str) -> None:
    seen: set[str] = set()
    for index, key in enumerate(keys):
        value = attribute(key)
        if value in seen:
            raise KeyFileError(f"keys[{index}].{name}: used by an earlier key")
        seen.add(value)


# --- rate limits ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; a request takes one."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, now: float, burst: float | None = None) -> TokenBucket:
        """A bucket holding its burst (one second's worth, at least one token, by default)."""
        size = burst if burst is not None else max(1.0, rate)
        return cls(rate, size, size, now)

    def take(self, now: float) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is one."""
        tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class RateLimiter:
    """A token bucket per key, in this process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        """:param clock: seconds, monotonic; tests pass a fake."""
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def wait(self, key: ApiKey) -> float:
        """0.0 when ``key`` may make a request now, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key.key_id)
        if bucket is None:
            bucket = self._buckets[key.key_id] = TokenBucket.full(key.rate_per_second, now)
        return bucket.take(now)
