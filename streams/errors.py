"""The errors of credit-transport, one class per boundary that can fail.

Hierarchy::

    AppError
    ├── SerializationError          bytes on the wire could not become a record, or back
    │   ├── UnknownSchemaError      the writer schema (id, fingerprint or record) is not known
    │   └── WireFormatError         the framing around the Avro body is wrong
    ├── SchemaRegistryError         the schema registry is unreachable or misbehaves
    ├── ValidationError             a decoded event breaks a domain rule
    ├── SinkError                   an outbound write failed
    │   └── SinkBackpressureError   the sink asks to be retried later
    └── ConfigError                 the configuration or the checked-in schemas are inconsistent

A :class:`SerializationError` is the record's fault: the agent dead-letters the original bytes with
its :attr:`~SerializationError.reason_code`. A :class:`SchemaRegistryError` is not: the same record
decodes once the registry is back, so it must never be dead-lettered.
"""

from __future__ import annotations

import enum


class AppError(Exception):
    """Base of every error this project raises on purpose."""


class SerializationReason(enum.StrEnum):
    """Stable reason codes of :class:`SerializationError`, as written to dead letters.

    Dashboards and dead-letter tooling match on these strings: add codes, never rename one.
    """

    EMPTY_PAYLOAD = "EMPTY_PAYLOAD"
    """No bytes at all (including a Kafka tombstone)."""
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    """More bytes than the configured maximum; not decoded at all."""
    UNKNOWN_MAGIC_BYTE = "UNKNOWN_MAGIC_BYTE"
    """The first bytes are neither a Confluent nor an Avro single-object header."""
    TRUNCATED_HEADER = "TRUNCATED_HEADER"
    """The payload ends inside its wire-format header."""
    UNKNOWN_SCHEMA_ID = "UNKNOWN_SCHEMA_ID"
    """The Confluent schema id is not in the id table or the registry."""
    UNKNOWN_FINGERPRINT = "UNKNOWN_FINGERPRINT"
    """The single-object fingerprint matches no checked-in schema."""
    UNKNOWN_RECORD = "UNKNOWN_RECORD"
    """The record type has no schema (or no domain type) in this service."""
    WRONG_RECORD_TYPE = "WRONG_RECORD_TYPE"
    """A valid record, but not the one the topic carries."""
    AVRO_DECODE_FAILED = "AVRO_DECODE_FAILED"
    """The Avro body does not decode with its writer schema."""
    TRAILING_BYTES = "TRAILING_BYTES"
    """The Avro body decoded but left bytes unread after it."""
    AVRO_ENCODE_FAILED = "AVRO_ENCODE_FAILED"
    """A value does not fit its schema."""
    MAPPING_FAILED = "MAPPING_FAILED"
    """An Avro value does not map to a domain type, or a domain value to Avro."""


class SerializationError(AppError):
    """Bytes could not become a record (or a record could not become bytes)."""

    reason_code: SerializationReason
    """Why, as a stable machine-readable code."""
    message: str
    """What is wrong, for humans (the text after the code)."""

    def __init__(self, reason_code: SerializationReason, message: str) -> None:
        """Describe a serialization failure.

        :param reason_code: the stable code written to dead letters and metrics.
        :param message: what is wrong, for humans; never unmasked personal data.
        """
        super().__init__(f"{reason_code}: {message}")
        self.reason_code = reason_code
        self.message = message


class UnknownSchemaError(SerializationError):
    """The writer schema of a payload cannot be found."""


class WireFormatError(SerializationError):
    """The header around the Avro body is missing, truncated or unknown."""


class SchemaRegistryError(AppError):
    """The schema registry could not be reached or answered with an error."""


class ValidationError(AppError):
    """A decoded event breaks a domain rule (see ``processors.validation``)."""


class SinkError(AppError):
    """Writing to an outbound system failed."""


class SinkBackpressureError(SinkError):
    """The sink is overloaded and asks the caller to retry after a pause."""

    retry_after: float
    """Seconds to wait before the next attempt."""

    def __init__(self, retry_after: float, message: str = "sink asks to retry later") -> None:
        """Ask the caller to back off.

        :param retry_after: seconds to wait before writing again.
        :param message: what the sink reported.
        """
        super().__init__(f"{message} (retry after {retry_after:g} s)")
        self.retry_after = retry_after


class ConfigError(AppError):
    """The configuration, or the checked-in schemas and id table, are inconsistent."""
