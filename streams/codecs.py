"""Avro on the wire: the checked-in schemas, two wire formats, schema ids and the faust codec.

**Schemas.** :class:`SchemaStore` parses every ``schemas/avro/*.avsc`` once (the current reader
schema of each record) and ``schemas/avro/history/*.avsc`` (older writer schemas, kept so that
records written with them still decode). Each schema is known by its record name and by the
CRC-64-AVRO fingerprint of its Parsing Canonical Form.

**Wire formats.** :meth:`AvroSerde.decode` picks the format from the first bytes;
:meth:`AvroSerde.encode` writes the configured one:

- Confluent: ``0x00``, a 4-byte big-endian schema id, the Avro body;
- Avro single-object encoding: ``0xC3 0x01``, the 8-byte little-endian fingerprint, the body.

**Schema ids** (Confluent format only) come from a Confluent-compatible registry when one is
configured (:class:`RegistrySchemaIds`), else from the checked-in table ``schemas/avro/ids.json``
(:class:`LocalSchemaIds`): an append-only list of ``{id, record, version, fingerprint}``; ids are
assigned by hand, the next free integer for each new schema version, and never reused. The
fingerprint pins each id to one schema text, so editing a schema without giving it a new id fails
at start-up instead of mis-decoding old records.

**Errors.** Decoding raises only :class:`~streams.errors.SerializationError` subclasses for
whatever bytes it is given, each with a stable ``reason_code`` (:class:`SerializationReason`),
so that an agent can dead-letter the original bytes. With a registry configured it may also
raise :class:`~streams.errors.SchemaRegistryError`, which is not the record's fault.

Agents decode raw bytes themselves (``serde.decode`` then :func:`streams.mapping.to_domain`) so
that a failure can be dead-lettered with the original bytes; :class:`AvroCodec` wraps the same
calls for topics that use faust's codec machinery.
"""

from __future__ import annotations

import enum
import io
import json
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

import fastavro
import httpx
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.types import Schema
from faust.serializers.codecs import Codec

from streams.errors import (
    ConfigError,
    SchemaRegistryError,
    SerializationError,
    SerializationReason,
    UnknownSchemaError,
    WireFormatError,
)
from streams.mapping import DOMAIN_TYPES, from_domain, record_name_of, to_domain

SCHEMA_NAMESPACE = "cn.gov.donga.credit.v1"
"""Namespace of every record this service owns."""
DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "avro"
"""The checked-in schemas of the repository."""
DEFAULT_ID_TABLE = DEFAULT_SCHEMA_DIR / "ids.json"
"""The checked-in Confluent schema ids used when no registry is configured."""
DEFAULT_MAX_PAYLOAD_BYTES = 1 << 20
"""Largest payload decoded; Kafka's default message size limit is about the same."""

CONFLUENT_MAGIC = 0x00
CONFLUENT_HEADER_LENGTH = 5
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
SINGLE_OBJECT_HEADER_LENGTH = 10
_FINGERPRINT_ALGORITHM = "CRC-64-AVRO"
_read_schema_id = struct.Struct(">I").unpack_from
_pack_schema_id = struct.Struct(">I").pack
# Longest text of a fastavro error copied into a reason message; dead letters stay readable.
_MAX_CAUSE_CHARACTERS = 200


class WireFormat(enum.StrEnum):
    """How a record's Avro body is framed on the wire."""

    CONFLUENT = "CONFLUENT"
    """``0x00`` + 4-byte big-endian schema id + body."""
    SINGLE_OBJECT = "SINGLE_OBJECT"
    """``0xC3 0x01`` + 8-byte little-endian CRC-64-AVRO fingerprint + body."""


def _strip_decimal_logical_types(definition: Any) -> Any:
    """A copy of a schema definition in which Avro decimals read as their raw bytes.

    fastavro turns a decimal's bytes into a ``Decimal`` with no bound on their length, in time
    quadratic in it: one 1 MiB amount took minutes. Reading the bytes as bytes and converting them
    in ``streams.mapping`` after a length check keeps every payload cheap. Parsing Canonical Form
    ignores logical types, so the fingerprint does not change.
    """
    if isinstance(definition, list):
        return [_strip_decimal_logical_types(item) for item in definition]
    if not isinstance(definition, dict):
        return definition
    if definition.get("logicalType") == "decimal" and definition.get("type") in ("bytes", "fixed"):
        return {key: value for key, value in definition.items() if key != "logicalType"}
    return {key: _strip_decimal_logical_types(value) for key, value in definition.items()}


@dataclass(frozen=True, slots=True, eq=False)
class AvroSchema:
    """One parsed record schema, with its identity on the wire."""

    record_name: str
    """Short name of the record, e.g. ``OverloadDetection``."""
    full_name: str
    """Namespace-qualified name."""
    definition: Mapping[str, Any]
    """The schema as written (JSON), e.g. for registering it."""
    fingerprint: bytes
    """CRC-64-AVRO of the Parsing Canonical Form, in wire (little-endian) byte order."""
    for_writing: Schema
    """Parsed with logical types, for fastavro's writer."""
    for_reading: Schema
    """Parsed with decimals as raw bytes, for fastavro's reader (see above)."""

    @classmethod
    def parse(cls, definition: Mapping[str, Any]) -> AvroSchema:
        """Parse a record schema on its own: every named type it uses must be declared in it.

        :param definition: the JSON object of one ``record`` schema.
        :raises ValueError: (or fastavro's ``SchemaParseException``) if it is not one.
        """
        if definition.get("type") != "record":
            raise ValueError("not a record schema")
        # A fresh named-types table per schema: a file that leans on a type declared in another
        # file fails here, so that every schema stays self-contained.
        for_writing = fastavro.parse_schema(dict(definition), named_schemas={})
        for_reading = fastavro.parse_schema(
            _strip_decimal_logical_types(definition), named_schemas={}
        )
        canonical_form = to_parsing_canonical_form(for_writing)
        name = str(definition["name"])
        namespace = definition.get("namespace")
        full_name = name if "." in name or not namespace else f"{namespace}.{name}"
        return cls(
            record_name=full_name.rpartition(".")[2],
            full_name=full_name,
            definition=definition,
            fingerprint=bytes.fromhex(fingerprint(canonical_form, _FINGERPRINT_ALGORITHM)),
            for_writing=for_writing,
            for_reading=for_reading,
        )


class SchemaStore:
    """The record schemas this service reads and writes, parsed once.

    One current schema per record (the reader schema, also used for writing), plus older writer
    schemas that still decode, all indexed by fingerprint.
    """

    def __init__(self, current: Iterable[AvroSchema], history: Iterable[AvroSchema] = ()) -> None:
        """Index parsed schemas.

        :param current: the schema each record is read with and written with; one per record.
        :param history: older versions, used only as writer schemas.
        :raises ConfigError: on two current schemas for one record, a history schema for an
            unknown record, or the same schema twice.
        """
        self._current_by_record: dict[str, AvroSchema] = {}
        self._by_fingerprint: dict[bytes, AvroSchema] = {}
        for schema in current:
            if schema.record_name in self._current_by_record:
                raise ConfigError(f"two current schemas for record {schema.record_name}")
            self._current_by_record[schema.record_name] = schema
            self._index(schema)
        for schema in history:
            reader = self._current_by_record.get(schema.record_name)
            if reader is None or reader.full_name != schema.full_name:
                raise ConfigError(f"history schema of {schema.full_name} has no current schema")
            self._index(schema)

    def _index(self, schema: AvroSchema) -> None:
        if schema.fingerprint in self._by_fingerprint:
            raise ConfigError(f"{schema.full_name}: the same schema is checked in twice")
        self._by_fingerprint[schema.fingerprint] = schema

    @classmethod
    def from_directory(cls, directory: Path = DEFAULT_SCHEMA_DIR) -> SchemaStore:
        """Load ``<directory>/*.avsc`` as current schemas and ``history/*.avsc`` as older ones.

        :param directory: the schema folder; a file is named after its record
            (``OverloadDetection.avsc``, ``history/OverloadDetection.v1.avsc``).
        :raises ConfigError: if a file does not parse alone or is named after another record.
        """
        current = [_load_schema_file(path) for path in sorted(directory.glob("*.avsc"))]
        history = [_load_schema_file(path) for path in sorted(directory.glob("history/*.avsc"))]
        if not current:
            raise ConfigError(f"no schemas in {directory}")
        return cls(current, history)

    @property
    def record_names(self) -> tuple[str, ...]:
        """Names of the records that have a current schema."""
        return tuple(self._current_by_record)

    @property
    def schemas(self) -> tuple[AvroSchema, ...]:
        """Every schema, current and history."""
        return tuple(self._by_fingerprint.values())

    def current(self, record_name: str) -> AvroSchema:
        """The current schema of ``record_name``.

        :raises UnknownSchemaError: (``UNKNOWN_RECORD``) when there is none.
        """
        schema = self._current_by_record.get(record_name)
        if schema is None:
            raise UnknownSchemaError(
                SerializationReason.UNKNOWN_RECORD, f"no schema for record {record_name!r}"
            )
        return schema

    def by_fingerprint(self, schema_fingerprint: bytes) -> AvroSchema | None:
        """The checked-in schema with this fingerprint, if any."""
        return self._by_fingerprint.get(schema_fingerprint)


def _load_schema_file(path: Path) -> AvroSchema:
    try:
        schema = AvroSchema.parse(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as exc:
        raise ConfigError(f"{path}: not a self-contained Avro record schema: {exc}") from exc
    expected_name = path.name.split(".", 1)[0]
    if schema.record_name != expected_name:
        raise ConfigError(f"{path} declares record {schema.record_name}, not {expected_name}")
    if schema.full_name != f"{SCHEMA_NAMESPACE}.{expected_name}":
        raise ConfigError(f"{path}: record {schema.full_name} is not in {SCHEMA_NAMESPACE}")
    return schema


# --- schema ids (Confluent wire format) --------------------------------------------------------


class SchemaIds(Protocol):
    """Where Confluent schema ids come from: the checked-in table or a registry."""

    def id_of(self, record_name: str) -> int:
        """The id of the current schema of ``record_name``, to write in front of a record."""
        ...

    def schema_of(self, schema_id: int) -> AvroSchema:
        """The writer schema with this id; :class:`UnknownSchemaError` when there is none."""
        ...


class LocalSchemaIds:
    """Schema ids from the checked-in table, for running without a schema registry."""

    def __init__(self, store: SchemaStore, table: Mapping[str, Any]) -> None:
        """Check the table against the store and index it.

        :param store: the checked-in schemas.
        :param table: the parsed ``ids.json``: ``{"schemas": [{"id", "record", "version",
            "fingerprint"}, ...]}``, the fingerprint in hex as in a single-object header.
        :raises ConfigError: when an id is used twice, an entry names a schema that is not
            checked in (or the wrong record), or a checked-in schema has no id.
        """
        self._store = store
        self._schema_by_id: dict[int, AvroSchema] = {}
        self._id_by_fingerprint: dict[bytes, int] = {}
        try:
            entries = [
                (int(entry["id"]), str(entry["record"]), bytes.fromhex(entry["fingerprint"]))
                for entry in table["schemas"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"schema id table is malformed: {exc!r}") from exc
        for schema_id, record_name, schema_fingerprint in entries:
            schema = store.by_fingerprint(schema_fingerprint)
            if schema is None or schema.record_name != record_name:
                raise ConfigError(
                    f"schema id {schema_id} ({record_name}, {schema_fingerprint.hex()}) matches"
                    " no checked-in schema: ids are never reassigned; restore the schema"
                )
            if schema_id in self._schema_by_id or schema_fingerprint in self._id_by_fingerprint:
                raise ConfigError(f"schema id {schema_id} or its schema is listed twice")
            self._schema_by_id[schema_id] = schema
            self._id_by_fingerprint[schema_fingerprint] = schema_id
        next_id = max(self._schema_by_id, default=0) + 1
        for schema in store.schemas:
            if schema.fingerprint not in self._id_by_fingerprint:
                raise ConfigError(
                    f"{schema.record_name} (fingerprint {schema.fingerprint.hex()}) has no id:"
                    f" add it to the id table with id {next_id}"
                )

    @classmethod
    def load(cls, store: SchemaStore, path: Path = DEFAULT_ID_TABLE) -> LocalSchemaIds:
        """Read the id table from ``path``.

        :param store: the checked-in schemas.
        :param path: the ``ids.json`` file.
        """
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the schema id table: {exc}") from exc
        return cls(store, table)

    def id_of(self, record_name: str) -> int:
        """The id of the current schema of ``record_name``."""
        return self._id_by_fingerprint[self._store.current(record_name).fingerprint]

    def schema_of(self, schema_id: int) -> AvroSchema:
        """The checked-in schema with this id."""
        schema = self._schema_by_id.get(schema_id)
        if schema is None:
            raise UnknownSchemaError(
                SerializationReason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} is not in the table"
            )
        return schema


class SchemaRegistryClient:
    """A small synchronous client of a Confluent-compatible schema registry.

    Synchronous because faust's codec interface is: a lookup blocks the event loop, but only the
    first time an id is seen, since registry ids are immutable and their schemas are cached for
    good. Register the service's own schemas at start-up so that encoding never waits.
    """

    _CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

    def __init__(self, client: httpx.Client, base_url: str) -> None:
        """Talk to the registry at ``base_url`` through ``client``.

        :param client: the HTTP client (with its timeouts and auth); tests pass one built on
            ``httpx.MockTransport``.
        :param base_url: the registry's root URL, e.g. ``http://registry:8081``.
        """
        self._client = client
        self._base_url = base_url.rstrip("/")
        self._schema_text_by_id: dict[int, str] = {}
        self._id_by_subject_and_text: dict[tuple[str, str], int] = {}

    def schema_text(self, schema_id: int) -> str:
        """The Avro schema (JSON text) registered under ``schema_id``; cached.

        :raises UnknownSchemaError: (``UNKNOWN_SCHEMA_ID``) when the registry does not know the
            id or it is not an Avro schema.
        :raises SchemaRegistryError: when the registry cannot answer.
        """
        cached = self._schema_text_by_id.get(schema_id)
        if cached is not None:
            return cached
        response = self._request("GET", f"/schemas/ids/{schema_id}")
        if response.status_code == httpx.codes.NOT_FOUND:
            raise UnknownSchemaError(
                SerializationReason.UNKNOWN_SCHEMA_ID, f"the registry has no schema id {schema_id}"
            )
        body = self._json_body(response)
        if body.get("schemaType", "AVRO") != "AVRO" or not isinstance(body.get("schema"), str):
            raise UnknownSchemaError(
                SerializationReason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} is not Avro"
            )
        text: str = body["schema"]
        self._schema_text_by_id[schema_id] = text
        return text

    def register(self, subject: str, schema_text: str) -> int:
        """Register ``schema_text`` under ``subject`` (or find it there) and return its id; cached.

        :raises SchemaRegistryError: when the registry refuses or cannot answer.
        """
        key = (subject, schema_text)
        cached = self._id_by_subject_and_text.get(key)
        if cached is not None:
            return cached
        response = self._request(
            "POST",
            f"/subjects/{subject}/versions",
            content=json.dumps({"schema": schema_text}).encode(),
        )
        body = self._json_body(response)
        schema_id = body.get("id")
        if not isinstance(schema_id, int):
            raise SchemaRegistryError(f"registering {subject}: the answer has no id")
        self._id_by_subject_and_text[key] = schema_id
        self._schema_text_by_id[schema_id] = schema_text
        return schema_id

    def _request(self, method: str, path: str, content: bytes | None = None) -> httpx.Response:
        try:
            response = self._client.request(
                method,
                f"{self._base_url}{path}",
                content=content,
                headers={"Accept": self._CONTENT_TYPE, "Content-Type": self._CONTENT_TYPE},
            )
        except httpx.HTTPError as exc:
            raise SchemaRegistryError(f"{method} {path}: {exc!r}") from exc
        if response.is_success or response.status_code == httpx.codes.NOT_FOUND:
            return response
        raise SchemaRegistryError(f"{method} {path}: HTTP {response.status_code}")

    @staticmethod
    def _json_body(response: httpx.Response) -> dict[str, Any]:
        if not response.is_success:
            raise SchemaRegistryError(f"{response.request.url}: HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise SchemaRegistryError(f"{response.request.url}: not JSON") from exc
        if not isinstance(body, dict):
            raise SchemaRegistryError(f"{response.request.url}: not a JSON object")
        return body


class RegistrySchemaIds:
    """Schema ids from a schema registry, under the record name strategy.

    The subject of a schema is the record's full name, so one subject holds every version of a
    record whatever topic carries it.
    """

    def __init__(self, store: SchemaStore, client: SchemaRegistryClient) -> None:
        """Bind the registry to the checked-in schemas.

        :param store: the schemas this service reads with and writes.
        :param client: the registry client.
        """
        self._store = store
        self._client = client

    def id_of(self, record_name: str) -> int:
        """Register the current schema of ``record_name`` (once) and return its id."""
        schema = self._store.current(record_name)
        text = json.dumps(schema.definition, ensure_ascii=False, separators=(",", ":"))
        return self._client.register(schema.full_name, text)

    def schema_of(self, schema_id: int) -> AvroSchema:
        """The schema registered under ``schema_id``, parsed (a checked-in one when it is one)."""
        text = self._client.schema_text(schema_id)
        try:
            schema = AvroSchema.parse(json.loads(text))
        # A registry may hold anything under an id; whatever fastavro makes of it, the id is
        # unusable for this record, which is the record's problem, not the service's.
        except Exception as exc:
            raise UnknownSchemaError(
                SerializationReason.UNKNOWN_SCHEMA_ID,
                f"schema id {schema_id} is not an Avro record schema",
            ) from exc
        return self._store.by_fingerprint(schema.fingerprint) or schema


# --- encoding and decoding ---------------------------------------------------------------------


class DecodedRecord(NamedTuple):
    """A decoded payload: which record it is, which writer schema, and its Avro value."""

    record_name: str
    """Short record name, e.g. ``OverloadDetection``."""
    writer_fingerprint_or_id: int | bytes
    """The Confluent schema id (int) or the single-object fingerprint (8 bytes) it carried."""
    value: dict[str, Any]
    """The value as fastavro reads it with the current reader schema; money as raw bytes."""


class _ReadPlan(NamedTuple):
    record_name: str
    writer: Schema
    reader: Schema | None
    """None when writer and reader are the same schema: fastavro then skips resolution."""


class AvroSerde:
    """Encodes and decodes this service's records in either wire format.

    The core API the agents use: :meth:`decode` raw bytes into a :class:`DecodedRecord`,
    :meth:`encode` a value dict into bytes.
    """

    def __init__(
        self,
        store: SchemaStore,
        schema_ids: SchemaIds,
        *,
        wire_format: WireFormat = WireFormat.CONFLUENT,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        """Bind the schemas, the schema ids and the wire format.

        :param store: the schemas to read and write with.
        :param schema_ids: where Confluent schema ids come from (the table or a registry).
        :param wire_format: the format :meth:`encode` writes; :meth:`decode` reads both.
        :param max_payload_bytes: larger payloads are refused unread (``PAYLOAD_TOO_LARGE``).
        """
        self._store = store
        self._schema_ids = schema_ids
        self.wire_format = wire_format
        self._max_payload_bytes = max_payload_bytes
        self._plan_by_fingerprint = {
            schema.fingerprint: self._plan(schema) for schema in store.schemas
        }
        self._plan_by_id: dict[int, _ReadPlan] = {}
        self._header_by_record: dict[str, bytes] = {}

    @classmethod
    def with_local_ids(
        cls,
        schema_dir: Path = DEFAULT_SCHEMA_DIR,
        *,
        wire_format: WireFormat = WireFormat.CONFLUENT,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> AvroSerde:
        """A serde over the checked-in schemas and id table, for running without a registry.

        :param schema_dir: the schema folder, holding ``ids.json``.
        :param wire_format: the format :meth:`encode` writes.
        :param max_payload_bytes: larger payloads are refused unread.
        """
        store = SchemaStore.from_directory(schema_dir)
        return cls(
            store,
            LocalSchemaIds.load(store, schema_dir / "ids.json"),
            wire_format=wire_format,
            max_payload_bytes=max_payload_bytes,
        )

    @property
    def store(self) -> SchemaStore:
        """The schemas this serde reads and writes with."""
        return self._store

    def _plan(self, writer: AvroSchema) -> _ReadPlan:
        reader = self._store.current(writer.record_name)
        if reader.full_name != writer.full_name:
            raise UnknownSchemaError(
                SerializationReason.UNKNOWN_RECORD, f"no reader schema for {writer.full_name}"
            )
        if reader.fingerprint == writer.fingerprint:
            return _ReadPlan(writer.record_name, reader.for_reading, None)
        return _ReadPlan(writer.record_name, writer.for_reading, reader.for_reading)

    def _plan_for_id(self, schema_id: int) -> _ReadPlan:
        plan = self._plan_by_id.get(schema_id)
        if plan is None:
            writer = self._schema_ids.schema_of(schema_id)
            plan = self._plan_by_fingerprint.get(writer.fingerprint) or self._plan(writer)
            self._plan_by_id[schema_id] = plan
        return plan

    def _header(self, schema: AvroSchema) -> bytes:
        header = self._header_by_record.get(schema.record_name)
        if header is None:
            if self.wire_format is WireFormat.CONFLUENT:
                schema_id = self._schema_ids.id_of(schema.record_name)
                header = bytes([CONFLUENT_MAGIC]) + _pack_schema_id(schema_id)
            else:
                header = SINGLE_OBJECT_MAGIC + schema.fingerprint
            self._header_by_record[schema.record_name] = header
        return header

    def encode(self, record_name: str, value: Mapping[str, Any]) -> bytes:
        """``value`` written with the current schema of ``record_name``, framed.

        Money may be given as ``Decimal``; fields with a schema default may be left out.

        :raises UnknownSchemaError: (``UNKNOWN_RECORD``) for a record without a schema.
        :raises SerializationError: (``AVRO_ENCODE_FAILED``) when ``value`` does not fit.
        """
        schema = self._store.current(record_name)
        buffer = io.BytesIO()
        buffer.write(self._header(schema))
        try:
            fastavro.schemaless_writer(buffer, schema.for_writing, value, strict_allow_default=True)
        # fastavro reports a misfit as ValueError, TypeError, AttributeError, KeyError and more,
        # depending on the type and on whether its C extension is used; all mean the same here.
        except Exception as exc:
            # The cause's text may quote the value, personal data included: keep it out of the
            # message (it stays on the chained exception for debugging).
            raise SerializationError(
                SerializationReason.AVRO_ENCODE_FAILED,
                f"value does not fit {record_name}: {type(exc).__name__}",
            ) from exc
        return buffer.getvalue()

    def decode(self, data: bytes | None, expected_record: str | None = None) -> DecodedRecord:
        """The record in ``data``, read with the current reader schema of its record.

        :param data: the raw payload; ``None`` (a tombstone) counts as empty.
        :param expected_record: the record the topic carries; any other is ``WRONG_RECORD_TYPE``.
        :raises SerializationError: (a subclass, with its ``reason_code``) for any payload that
            is not one well-formed record; never anything else for any bytes.
        :raises SchemaRegistryError: only with a registry, when it cannot be reached.
        """
        if not data:
            raise WireFormatError(SerializationReason.EMPTY_PAYLOAD, "no bytes")
        size = len(data)
        if size > self._max_payload_bytes:
            raise WireFormatError(
                SerializationReason.PAYLOAD_TOO_LARGE,
                f"{size} bytes, more than {self._max_payload_bytes}",
            )
        writer_ref: int | bytes
        if data[0] == CONFLUENT_MAGIC:
            if size < CONFLUENT_HEADER_LENGTH:
                raise WireFormatError(
                    SerializationReason.TRUNCATED_HEADER, f"Confluent header cut at {size} bytes"
                )
            (schema_id,) = _read_schema_id(data, 1)
            # Nearly every id was seen before: look it up here rather than in a method call.
            plan = self._plan_by_id.get(schema_id) or self._plan_for_id(schema_id)
            writer_ref = schema_id
            body_start = CONFLUENT_HEADER_LENGTH
        elif data.startswith(SINGLE_OBJECT_MAGIC):
            if size < SINGLE_OBJECT_HEADER_LENGTH:
                raise WireFormatError(
                    SerializationReason.TRUNCATED_HEADER,
                    f"single-object header cut at {size} bytes",
                )
            writer_ref = data[2:SINGLE_OBJECT_HEADER_LENGTH]
            found = self._plan_by_fingerprint.get(writer_ref)
            if found is None:
                raise UnknownSchemaError(
                    SerializationReason.UNKNOWN_FINGERPRINT,
                    f"no schema has fingerprint {writer_ref.hex()}",
                )
            plan = found
            body_start = SINGLE_OBJECT_HEADER_LENGTH
        elif data == SINGLE_OBJECT_MAGIC[:1]:
            raise WireFormatError(
                SerializationReason.TRUNCATED_HEADER, "single-object header cut at 1 byte"
            )
        else:
            raise WireFormatError(
                SerializationReason.UNKNOWN_MAGIC_BYTE, f"payload starts with {data[:2].hex()}"
            )
        if expected_record is not None and plan.record_name != expected_record:
            raise SerializationError(
                SerializationReason.WRONG_RECORD_TYPE,
                f"a {plan.record_name} where {expected_record} was expected",
            )
        buffer = io.BytesIO(data)
        buffer.seek(body_start)
        try:
            # A record schema always reads as a dict.
            value = cast(
                dict[str, Any], fastavro.schemaless_reader(buffer, plan.writer, plan.reader)
            )
        # The body comes from outside, and fastavro reports malformed input with whatever its
        # failing step raises: EOFError when the bytes run out, IndexError for an enum or union
        # index out of range, UnicodeDecodeError for a bad string, OverflowError or ValueError for
        # an impossible date or instant, SchemaResolutionError when writer and reader disagree.
        # The list is open (the fuzz tests keep finding members; a reader that allocates a
        # declared length up front would add MemoryError), so this boundary catches Exception:
        # the caller's contract is that decoding raises nothing but SerializationError.
        except Exception as exc:
            cause = f"{type(exc).__name__}: {exc}"[:_MAX_CAUSE_CHARACTERS]
            raise SerializationError(
                SerializationReason.AVRO_DECODE_FAILED, f"{plan.record_name}: {cause}"
            ) from exc
        if buffer.tell() != size:
            raise SerializationError(
                SerializationReason.TRAILING_BYTES,
                f"{plan.record_name} ends after {buffer.tell()} of {size} bytes",
            )
        return DecodedRecord(plan.record_name, writer_ref, value)


class AvroCodec(Codec):
    """faust codec of one record: domain events (or, for records without one, dicts) to bytes.

    Loading returns the domain event for input records (``to_domain``), the Avro dict for the
    others (``DeadLetter``). Dumping accepts either a domain event or a dict.
    """

    def __init__(
        self,
        serde: AvroSerde,
        record_name: str,
        children: tuple[Codec, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        """Bind the codec to one record.

        :param serde: the encoder and decoder.
        :param record_name: the record the topic carries; any other is ``WRONG_RECORD_TYPE``.
        :param children: faust's codec chain (``codec | other``); usually none.
        """
        # faust's clone() rebuilds a codec from its kwargs: keep every argument there.
        super().__init__(children=children, serde=serde, record_name=record_name, **kwargs)
        self.serde = serde
        self.record_name = record_name
        self._maps_to_domain = record_name in DOMAIN_TYPES

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, Mapping):
            return self.serde.encode(self.record_name, obj)
        if record_name_of(obj) != self.record_name:
            raise SerializationError(
                SerializationReason.WRONG_RECORD_TYPE,
                f"a {type(obj).__name__} given to the {self.record_name} codec",
            )
        return self.serde.encode(self.record_name, from_domain(obj))

    def _loads(self, s: bytes) -> Any:
        decoded = self.serde.decode(s, expected_record=self.record_name)
        if self._maps_to_domain:
            return to_domain(decoded.record_name, decoded.value)
        return decoded.value
