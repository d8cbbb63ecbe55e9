"""The Avro contracts and the codec layer: schemas, wire formats, ids, mapping, faust codec."""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import time
import typing
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema
import httpx
import pytest

from processors import model
from processors.model import (
    ChangeType,
    LicenceStatus,
    LicenceType,
    LicensingDecision,
    Objection,
    ObjectionAction,
    ObjectionTarget,
    OverloadDetection,
    PenaltyCategory,
    PenaltyDecision,
    PlateColour,
    Procedure,
    RepairApplication,
    StationType,
    SubjectKind,
    SubjectType,
    ViolationCode,
)
from streams.codecs import (
    DEFAULT_ID_TABLE,
    DEFAULT_MAX_PAYLOAD_BYTES,
    DEFAULT_SCHEMA_DIR,
    SCHEMA_NAMESPACE,
    AvroCodec,
    AvroSchema,
    AvroSerde,
    LocalSchemaIds,
    RegistrySchemaIds,
    SchemaRegistryClient,
    SchemaStore,
    WireFormat,
)
from streams.errors import (
    ConfigError,
    SchemaRegistryError,
    SerializationError,
    SerializationReason,
    UnknownSchemaError,
)
from streams.mapping import (
    DOMAIN_TYPES,
    MONEY_PRECISION,
    MONEY_SCALE,
    from_domain,
    record_name_of,
    to_domain,
)
from streams.topics import INPUT_TOPICS

# --- constant payloads -------------------------------------------------------------------------

CARRIER_USCC = "91371524MA3C8K2Q1N"
LOADING_SOURCE_USCC = "91371524MA3D2F7N4H"
BUREAU_USCC = "113715240043812010"
DRIVER_ID_NUMBER = "371524198506150313"

DETECTION = OverloadDetection(
    event_id="zc-371524-01-20250314-000873",
    detection_id="JC3715242025031400873",
    event_time=datetime(2025, 3, 14, 2, 17, 45, 120_000, tzinfo=UTC),
    station_id="371524-ZC-01",
    station_name="东阿县超限检测站",
    station_type=StationType.FIXED_STATION_PRECISE,
    plate_number="鲁P83627",
    plate_colour=PlateColour.YELLOW,
    vehicle_class="六轴列车",
    axle_count=6,
    gross_weight_kg=61_250,
    legal_limit_kg=49_000,
    reported_overload_ratio=0.25,
    carrier_uscc=CARRIER_USCC,
    carrier_name="东阿县鑫达物流有限公司",
    driver_id_number=DRIVER_ID_NUMBER,
    driver_name="王建国",
    driver_qualification_number=DRIVER_ID_NUMBER,
    loading_source_uscc=LOADING_SOURCE_USCC,
    loading_source_name="东阿县鲁西石料有限公司",
    evidence_refs=("photo/20250314/000873-front.jpg", "ticket/20250314/000873.pdf"),
)

PENALTY = PenaltyDecision(
    event_id="cf-371524-2025-0312-r0",
    decision_number="东交执罚〔2025〕第0312号",
    revision=0,
    change_type=ChangeType.ISSUED,
    subject_name="东阿县鑫达物流有限公司",
    subject_type=SubjectType.LEGAL_PERSON,
    violation_code=ViolationCode.OVERLOAD_TRANSPORT,
    violation_type="违法超限运输",
    facts="2025年3月14日，鲁P83627六轴列车经东阿县超限检测站检测，车货总质量61.25吨，"
    "超过限定标准49吨。",
    legal_basis="《公路安全保护条例》第六十四条",
    penalty_categories=(PenaltyCategory.FINE,),
    content="罚款2000元",
    fine_amount_yuan=Decimal("2000.00"),
    decision_date=date(2025, 3, 17),
    authority="东阿县交通运输局",
    authority_code=BUREAU_USCC,
    procedure=Procedure.GENERAL,
    subject_uscc=CARRIER_USCC,
    legal_representative="李明",
    plate_number="鲁P83627",
    plate_colour=PlateColour.YELLOW,
    driver_id_number=DRIVER_ID_NUMBER,
    confiscated_amount_yuan=Decimal("0.00"),
    related_detection_ids=("JC3715242025031400873",),
)

OPERATING_CERTIFICATE = LicensingDecision(
    event_id="xk-371524-2025-0088-r0",
    licence_number="鲁交运管货字371524012345号",
    document_number="东交许〔2025〕第0088号",
    document_name="道路运输证核发决定书",
    revision=0,
    licence_type=LicenceType.VEHICLE_OPERATING_CERTIFICATE,
    status=LicenceStatus.GRANTED,
    subject_name="东阿县鑫达物流有限公司",
    subject_type=SubjectType.LEGAL_PERSON,
    licence_category="普通",
    certificate_name="道路运输证",
    content="核发道路运输证（鲁P83627，黄色，重型半挂牵引车）",
    decision_date=date(2025, 1, 8),
    valid_from=date(2025, 1, 8),
    valid_until=date(2029, 1, 7),
    authority="东阿县交通运输局",
    authority_code=BUREAU_USCC,
    subject_uscc=CARRIER_USCC,
    legal_representative="李明",
    plate_number="鲁P83627",
    plate_colour=PlateColour.YELLOW,
    carrier_uscc=CARRIER_USCC,
)

OVERSIZE_PERMIT = dataclasses.replace(
    OPERATING_CERTIFICATE,
    event_id="xk-371524-2025-0107-r0",
    licence_number="鲁超限371524202500107",
    document_number="东交许〔2025〕第0107号",
    document_name="超限运输车辆通行许可决定书",
    licence_type=LicenceType.OVERSIZE_TRANSPORT_PERMIT,
    certificate_name="超限运输车辆通行证",
    content="准予鲁P83627装载变压器超限运输",
    decision_date=date(2025, 2, 3),
    valid_from=date(2025, 2, 5),
    valid_until=date(2025, 2, 7),
    permit_route="G220东阿段—S254聊城方向",
    permit_valid_from=datetime(2025, 2, 4, 16, 0, tzinfo=UTC),
    permit_valid_until=datetime(2025, 2, 6, 16, 0, tzinfo=UTC),
)

LIST_ENTRY_OBJECTION = Objection(
    event_id="yy-371524-2025-0021#FILED",
    objection_id="yy-371524-2025-0021",
    action=ObjectionAction.FILED,
    subject_kind=SubjectKind.VEHICLE,
    target=ObjectionTarget.LIST_ENTRY,
    occurred_at=datetime(2025, 4, 2, 1, 30, 5, 250_000, tzinfo=UTC),
    handled_by="东阿县交通运输局",
    plate_number="鲁P83627",
    plate_colour=PlateColour.YELLOW,
    list_name="BLACKLIST",
    rule_id="overload.vehicle",
    reason="3月14日与3月15日两次检测系同一次运输",
)

DECISION_OBJECTION = dataclasses.replace(
    LIST_ENTRY_OBJECTION,
    event_id="yy-371524-2025-0022#REJECTED",
    objection_id="yy-371524-2025-0022",
    action=ObjectionAction.REJECTED,
    subject_kind=SubjectKind.DRIVER,
    target=ObjectionTarget.DECISION,
    subject_code=DRIVER_ID_NUMBER,
    plate_number=None,
    plate_colour=None,
    list_name=None,
    rule_id=None,
    decision_number="东交执罚〔2025〕第0312号",
    reason="",  # the schema default
)

REPAIR_APPLICATION = RepairApplication(
    event_id="xf-371524-2025-0007",
    application_id="xf-371524-2025-0007",
    subject_kind=SubjectKind.CARRIER,
    decision_number="东交执罚〔2025〕第0312号",
    applied_at=datetime(2025, 7, 1, 8, 0, tzinfo=UTC),
    obligations_fulfilled=True,
    public_commitment=False,
    subject_code=CARRIER_USCC,
    applicant_name="东阿县鑫达物流有限公司",
)

DEAD_LETTER: dict[str, Any] = {
    "original_key": "鲁P83627|YELLOW".encode(),
    "original_value": b"\x00\x00\x00\x00\x02\xff\xff",
    "original_headers": [
        {"key": "source", "value": b"zc-371524-01"},
        {"key": "trace", "value": None},
    ],
    "source_topic": "overload-detections",
    "source_partition": 3,
    "source_offset": 1_048_577,
    "reason_code": "AVRO_DECODE_FAILED",
    "message": "OverloadDetection: EOFError",
    "first_seen_time": datetime(2025, 3, 14, 2, 17, 46, 5_000, tzinfo=UTC),
    "attempt_count": 1,
    "failed_stage": "DECODE",
}

DOMAIN_PAYLOADS = (
    DETECTION,
    PENALTY,
    OPERATING_CERTIFICATE,
    OVERSIZE_PERMIT,
    LIST_ENTRY_OBJECTION,
    DECISION_OBJECTION,
    REPAIR_APPLICATION,
)

SCHEMA_FILES = sorted(DEFAULT_SCHEMA_DIR.glob("*.avsc")) + sorted(
    DEFAULT_SCHEMA_DIR.glob("history/*.avsc")
)


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore.from_directory()


@pytest.fixture(scope="module", params=list(WireFormat))
def serde(request: pytest.FixtureRequest, store: SchemaStore) -> AvroSerde:
    return AvroSerde(store, LocalSchemaIds.load(store), wire_format=request.param)


@pytest.fixture(scope="module")
def confluent_serde(store: SchemaStore) -> AvroSerde:
    return AvroSerde(store, LocalSchemaIds.load(store), wire_format=WireFormat.CONFLUENT)


def _load_json(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _walk_named_types(schema: Any) -> Iterator[dict[str, Any]]:
    """Every record and enum declared anywhere inside a schema definition."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _walk_named_types(branch)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum"):
            yield schema
        for field in schema.get("fields", ()):
            yield from _walk_named_types(field["type"])
        if "items" in schema:
            yield from _walk_named_types(schema["items"])


# --- the schema files --------------------------------------------------------------------------


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_every_schema_file_parses_alone(path: Path) -> None:
    """Each .avsc parses with no other file's named types, in the project namespace."""
    schema = AvroSchema.parse(_load_json(path))
    assert schema.full_name == f"{SCHEMA_NAMESPACE}.{path.name.split('.')[0]}"


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda path: path.name)
def test_every_record_field_and_enum_has_a_doc(path: Path) -> None:
    """No record, field or enum in any schema file is left without a doc."""
    undocumented = []
    for named in _walk_named_types(_load_json(path)):
        if not str(named.get("doc", "")).strip():
            undocumented.append(named["name"])
        for field in named.get("fields", ()):
            if not str(field.get("doc", "")).strip():
                undocumented.append(f"{named['name']}.{field['name']}")
    assert undocumented == []


def test_named_types_declared_in_several_files_are_identical(store: SchemaStore) -> None:
    """An enum repeated to keep files self-contained (e.g. PlateColour) is the same everywhere."""
    forms: dict[str, set[str]] = {}
    for path in sorted(DEFAULT_SCHEMA_DIR.glob("*.avsc")):
        for named in _walk_named_types(_load_json(path)):
            if named["type"] == "enum":
                forms.setdefault(named["name"], set()).add(json.dumps(named, sort_keys=True))
    assert {name: len(texts) for name, texts in forms.items() if len(texts) > 1} == {}


@pytest.mark.parametrize("record_name", sorted(DOMAIN_TYPES))
def test_schema_fields_match_the_domain_type(store: SchemaStore, record_name: str) -> None:
    """Same field names in the same order; a field is nullable exactly when the domain's is."""
    domain_type = DOMAIN_TYPES[record_name]
    hints = typing.get_type_hints(domain_type)
    domain_fields = [
        (field.name, type(None) in typing.get_args(hints[field.name]))
        for field in dataclasses.fields(domain_type)
    ]
    schema_fields = [
        (field["name"], isinstance(field["type"], list) and "null" in field["type"])
        for field in store.current(record_name).definition["fields"]
    ]
    assert schema_fields == domain_fields


def test_avro_enums_have_the_domain_enum_symbols(store: SchemaStore) -> None:
    """Every Avro enum but the dead-letter stage is a domain enum, with its values in order."""
    without_domain_enum = set()
    for schema in store.schemas:
        for named in _walk_named_types(dict(schema.definition)):
            if named["type"] != "enum":
                continue
            domain_enum = getattr(model, named["name"], None)
            if isinstance(domain_enum, type) and issubclass(domain_enum, enum.Enum):
                assert named["symbols"] == [member.value for member in domain_enum]
            else:
                without_domain_enum.add(named["name"])
    assert without_domain_enum == {"DeadLetterStage"}


def test_money_decimals_match_the_mapping(store: SchemaStore) -> None:
    """The precision and scale the mapping checks amounts against are the schemas' own."""
    decimals = [
        field["type"]
        for name in DOMAIN_TYPES
        for field in store.current(name).definition["fields"]
        if isinstance(field["type"], dict) and field["type"].get("logicalType") == "decimal"
    ]
    assert decimals
    assert {(d["type"], d["precision"], d["scale"]) for d in decimals} == {
        ("bytes", MONEY_PRECISION, MONEY_SCALE)
    }


def _rabin_crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification writes it out, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for index in range(256):
        fp = index
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_fingerprint_is_crc64_avro_of_the_parsing_canonical_form(store: SchemaStore) -> None:
    """The store's fingerprints agree with the specification's algorithm, little-endian."""
    for schema in store.schemas:
        canonical = fastavro.schema.to_parsing_canonical_form(schema.for_writing).encode()
        assert schema.fingerprint == _rabin_crc64_avro(canonical).to_bytes(8, "little")


def test_decimal_logical_type_does_not_change_the_fingerprint(store: SchemaStore) -> None:
    """Reading amounts as raw bytes (the guard against giant decimals) keeps the writer identity."""
    penalty = store.current("PenaltyDecision")
    reading_form = fastavro.schema.to_parsing_canonical_form(penalty.for_reading)
    assert (
        bytes.fromhex(fastavro.schema.fingerprint(reading_form, "CRC-64-AVRO"))
        == penalty.fingerprint
    )


# --- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("event", DOMAIN_PAYLOADS, ids=lambda event: event.event_id)
def test_domain_event_round_trips(serde: AvroSerde, event: model.InputEvent) -> None:
    """encode(from_domain(e)) decodes and maps back to an equal event, in both wire formats."""
    record_name = record_name_of(event)
    data = serde.encode(record_name, from_domain(event))
    decoded = serde.decode(data, expected_record=record_name)
    assert decoded.record_name == record_name
    assert to_domain(decoded.record_name, decoded.value) == event


def test_dead_letter_round_trips(serde: AvroSerde) -> None:
    """A dead letter keeps the original bytes, headers (a null one included) and reason."""
    decoded = serde.decode(serde.encode("DeadLetter", DEAD_LETTER), expected_record="DeadLetter")
    assert decoded.value == DEAD_LETTER


@pytest.mark.parametrize("event", DOMAIN_PAYLOADS, ids=lambda event: event.event_id)
def test_encode_decode_map_and_encode_again_gives_the_same_bytes(
    serde: AvroSerde, event: model.InputEvent
) -> None:
    """encode → decode → to_domain → from_domain → encode is byte for byte the same."""
    record_name = record_name_of(event)
    first = serde.encode(record_name, from_domain(event))
    decoded = serde.decode(first)
    again = serde.encode(record_name, from_domain(to_domain(record_name, decoded.value)))
    assert again == first


def test_confluent_header_carries_the_local_schema_id(confluent_serde: AvroSerde) -> None:
    """Confluent framing is 0x00 and the id of the current schema from ids.json."""
    data = confluent_serde.encode("PenaltyDecision", from_domain(PENALTY))
    table = _load_json(DEFAULT_ID_TABLE)["schemas"]
    fingerprint = confluent_serde.store.current("PenaltyDecision").fingerprint.hex()
    (expected_id,) = [entry["id"] for entry in table if entry["fingerprint"] == fingerprint]
    assert data[:5] == b"\x00" + expected_id.to_bytes(4, "big")
    assert confluent_serde.decode(data).writer_fingerprint_or_id == expected_id


@pytest.mark.parametrize(
    ("event", "record_name", "schema_id"),
    [
        (LIST_ENTRY_OBJECTION, "Objection", 6),
        # The one record not named after its class: 信用修复 on the wire.
        (REPAIR_APPLICATION, "CreditRepairApplication", 7),
    ],
)
def test_lifecycle_records_carry_their_names_and_local_ids(
    confluent_serde: AvroSerde, event: model.InputEvent, record_name: str, schema_id: int
) -> None:
    """Objections and repair applications are written under their own record and id."""
    assert record_name_of(event) == record_name
    data = confluent_serde.encode(record_name, from_domain(event))
    assert data[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    decoded = confluent_serde.decode(data, expected_record=record_name)
    assert type(to_domain(decoded.record_name, decoded.value)) is type(event)


def test_every_input_topic_carries_a_mapped_record_and_every_mapped_record_has_a_topic(
    store: SchemaStore,
) -> None:
    """streams/topics.py, the schemas and streams/mapping.py name the same input records."""
    records = [spec.record for spec in INPUT_TOPICS]
    assert len(set(records)) == len(records)
    assert set(records) == set(DOMAIN_TYPES)
    assert set(records) <= set(store.record_names)


def test_single_object_header_carries_the_fingerprint(store: SchemaStore) -> None:
    """Single-object framing is 0xC3 0x01 and the 8-byte fingerprint."""
    serde = AvroSerde(store, LocalSchemaIds.load(store), wire_format=WireFormat.SINGLE_OBJECT)
    data = serde.encode("OverloadDetection", from_domain(DETECTION))
    fingerprint = store.current("OverloadDetection").fingerprint
    assert data[:10] == b"\xc3\x01" + fingerprint
    assert serde.decode(data).writer_fingerprint_or_id == fingerprint


def test_encoding_fills_in_schema_defaults(confluent_serde: AvroSerde) -> None:
    """Optional fields left out of a dict are written with their defaults."""
    required_only = {
        key: value
        for key, value in from_domain(DETECTION).items()
        if key not in {"carrier_name", "driver_name", "evidence_refs"}
    }
    decoded = confluent_serde.decode(confluent_serde.encode("OverloadDetection", required_only))
    assert decoded.value["driver_name"] is None
    assert decoded.value["evidence_refs"] == []


@pytest.mark.parametrize(
    ("event", "defaults"),
    [
        (
            LIST_ENTRY_OBJECTION,
            {
                "subject_code": None,
                "plate_number": None,
                "plate_colour": None,
                "list_name": None,
                "rule_id": None,
                "decision_number": None,
                "reason": "",
            },
        ),
        (
            REPAIR_APPLICATION,
            {
                "subject_code": None,
                "plate_number": None,
                "plate_colour": None,
                "applicant_name": "",
            },
        ),
    ],
    ids=["objection", "repair-application"],
)
def test_lifecycle_records_default_their_optional_fields(
    confluent_serde: AvroSerde, event: model.InputEvent, defaults: dict[str, Any]
) -> None:
    """Optional fields left out of an objection or application read as the domain defaults."""
    record_name = record_name_of(event)
    value = {key: item for key, item in from_domain(event).items() if key not in defaults}
    decoded = confluent_serde.decode(confluent_serde.encode(record_name, value))
    assert to_domain(decoded.record_name, decoded.value) == dataclasses.replace(event, **defaults)


# --- schema evolution --------------------------------------------------------------------------


def _history_v1(store: SchemaStore) -> AvroSchema:
    (v1,) = [
        schema
        for schema in store.schemas
        if schema.record_name == "OverloadDetection"
        and schema is not store.current("OverloadDetection")
    ]
    return v1


def _write_body(schema: AvroSchema, value: dict[str, Any]) -> bytes:
    """An Avro body written with ``schema``, as an older or newer producer would."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema.for_writing, value)
    return buffer.getvalue()


def test_record_written_with_history_v1_reads_with_defaults(store: SchemaStore) -> None:
    """A v1 detection (no loading source, no evidence) decodes with the new fields defaulted."""
    v1 = _history_v1(store)
    v1_fields = {field["name"] for field in v1.definition["fields"]}
    v1_value = {key: value for key, value in from_domain(DETECTION).items() if key in v1_fields}
    body = _write_body(v1, v1_value)
    (v1_id,) = [
        entry["id"]
        for entry in _load_json(DEFAULT_ID_TABLE)["schemas"]
        if entry["fingerprint"] == v1.fingerprint.hex()
    ]
    serde = AvroSerde(store, LocalSchemaIds.load(store))
    expected = dataclasses.replace(
        DETECTION, loading_source_uscc=None, loading_source_name=None, evidence_refs=()
    )
    for data in (b"\x00" + v1_id.to_bytes(4, "big") + body, b"\xc3\x01" + v1.fingerprint + body):
        decoded = serde.decode(data, expected_record="OverloadDetection")
        assert decoded.writer_fingerprint_or_id in (v1_id, v1.fingerprint)
        assert to_domain(decoded.record_name, decoded.value) == expected


def test_unknown_violation_code_from_a_newer_writer_reads_as_other(store: SchemaStore) -> None:
    """The ViolationCode enum default lets a newer producer add codes without breaking us."""
    newer = json.loads(json.dumps(store.current("PenaltyDecision").definition))
    (violation_field,) = [f for f in newer["fields"] if f["name"] == "violation_code"]
    violation_field["type"]["symbols"].append("TAMPER_WITH_SCALE")
    newer_schema = AvroSchema.parse(newer)
    value = from_domain(PENALTY) | {"violation_code": "TAMPER_WITH_SCALE"}
    data = b"\xc3\x01" + newer_schema.fingerprint + _write_body(newer_schema, value)
    evolved_store = SchemaStore(
        [store.current(name) for name in store.record_names], [newer_schema]
    )
    decoded = AvroSerde(evolved_store, _local_ids_for(evolved_store)).decode(data)
    event = to_domain(decoded.record_name, decoded.value)
    assert isinstance(event, PenaltyDecision)
    assert event.violation_code is ViolationCode.OTHER


def _local_ids_for(store: SchemaStore) -> LocalSchemaIds:
    """An id table numbering every schema of ``store`` from 1."""
    return LocalSchemaIds(
        store,
        {
            "schemas": [
                {
                    "id": number,
                    "record": schema.record_name,
                    "version": 1,
                    "fingerprint": schema.fingerprint.hex(),
                }
                for number, schema in enumerate(store.schemas, start=1)
            ]
        },
    )


# --- the local id table ------------------------------------------------------------------------


def test_local_id_table_covers_every_checked_in_schema(store: SchemaStore) -> None:
    """ids.json gives each schema file, history included, exactly one id."""
    ids = LocalSchemaIds.load(store)
    assert sorted(ids.schema_of(ids.id_of(name)).record_name for name in store.record_names) == (
        sorted(store.record_names)
    )
    entries = _load_json(DEFAULT_ID_TABLE)["schemas"]
    assert len({entry["id"] for entry in entries}) == len(entries) == len(store.schemas)


def test_local_id_table_refuses_a_schema_edited_without_a_new_id(store: SchemaStore) -> None:
    """A changed schema text no longer matches its pinned fingerprint: start-up fails."""
    table = _load_json(DEFAULT_ID_TABLE)
    table["schemas"][-1]["fingerprint"] = "00" * 8
    with pytest.raises(ConfigError, match="matches no checked-in schema"):
        LocalSchemaIds(store, table)


def test_local_id_table_names_the_next_id_for_a_new_schema(store: SchemaStore) -> None:
    """A schema without an entry fails start-up with the id to add."""
    table = _load_json(DEFAULT_ID_TABLE)
    dropped = table["schemas"].pop()
    with pytest.raises(ConfigError, match=f"with id {dropped['id']}"):
        LocalSchemaIds(store, table)


def test_schema_file_named_after_another_record_is_refused(tmp_path: Path) -> None:
    """A file's name must be its record's name, so the folder reads as an index."""
    definition = _load_json(DEFAULT_SCHEMA_DIR / "DeadLetter.avsc")
    (tmp_path / "Rejected.avsc").write_text(json.dumps(definition), encoding="utf-8")
    with pytest.raises(ConfigError, match="declares record DeadLetter"):
        SchemaStore.from_directory(tmp_path)


def test_schema_file_leaning_on_another_files_type_is_refused(tmp_path: Path) -> None:
    """A named type used but not declared in the same file fails at load: files stand alone."""
    definition = {
        "type": "record",
        "name": "Lean",
        "namespace": SCHEMA_NAMESPACE,
        "doc": "x",
        "fields": [{"name": "colour", "type": f"{SCHEMA_NAMESPACE}.PlateColour", "doc": "x"}],
    }
    (tmp_path / "Lean.avsc").write_text(json.dumps(definition), encoding="utf-8")
    with pytest.raises(ConfigError, match="not a self-contained"):
        SchemaStore.from_directory(tmp_path)


# --- decoding failures -------------------------------------------------------------------------


def _valid(serde: AvroSerde) -> bytes:
    return serde.encode("OverloadDetection", from_domain(DETECTION))


Reason = SerializationReason

DECODE_FAILURES = [
    pytest.param(lambda valid: b"", Reason.EMPTY_PAYLOAD, id="empty"),
    pytest.param(lambda valid: None, Reason.EMPTY_PAYLOAD, id="tombstone"),
    pytest.param(lambda valid: b'{"event_id": "x"}', Reason.UNKNOWN_MAGIC_BYTE, id="json"),
    pytest.param(lambda valid: b"\xc3\x02" + valid[2:], Reason.UNKNOWN_MAGIC_BYTE, id="c3-not-01"),
    pytest.param(lambda valid: b"\x00\x00\x00", Reason.TRUNCATED_HEADER, id="confluent-cut"),
    pytest.param(lambda valid: b"\xc3", Reason.TRUNCATED_HEADER, id="lone-c3"),
    pytest.param(lambda valid: b"\xc3\x01\x11\x22", Reason.TRUNCATED_HEADER, id="soe-cut"),
    pytest.param(
        lambda valid: b"\x00\x00\x00\x03\xe7" + valid[5:], Reason.UNKNOWN_SCHEMA_ID, id="id-999"
    ),
    pytest.param(
        lambda valid: b"\xc3\x01" + b"\x00" * 8 + valid[10:],
        Reason.UNKNOWN_FINGERPRINT,
        id="unknown-fingerprint",
    ),
    # Cut inside the last field (the evidence list): fastavro runs out of bytes.
    pytest.param(lambda valid: valid[:-3], Reason.AVRO_DECODE_FAILED, id="body-cut"),
    pytest.param(lambda valid: valid + b"\x00", Reason.TRAILING_BYTES, id="trailing-byte"),
    pytest.param(
        lambda valid: valid + bytes(DEFAULT_MAX_PAYLOAD_BYTES), Reason.PAYLOAD_TOO_LARGE, id="big"
    ),
]


@pytest.mark.parametrize(("make_payload", "reason"), DECODE_FAILURES)
def test_malformed_payload_is_refused_with_its_reason(
    confluent_serde: AvroSerde,
    make_payload: Callable[[bytes], bytes | None],
    reason: SerializationReason,
) -> None:
    """Each kind of broken payload raises SerializationError with a stable reason code."""
    with pytest.raises(SerializationError) as caught:
        confluent_serde.decode(make_payload(_valid(confluent_serde)))
    assert caught.value.reason_code is reason


def test_unknown_fingerprint_is_an_unknown_schema_error(confluent_serde: AvroSerde) -> None:
    """Unknown ids and fingerprints are UnknownSchemaError, a SerializationError."""
    with pytest.raises(UnknownSchemaError):
        confluent_serde.decode(b"\xc3\x01" + b"\x01" * 8 + b"\x00")


def test_record_of_another_type_is_refused_on_a_typed_topic(confluent_serde: AvroSerde) -> None:
    """A penalty on the detections topic is WRONG_RECORD_TYPE, before its body is read."""
    data = confluent_serde.encode("PenaltyDecision", from_domain(PENALTY))
    with pytest.raises(SerializationError) as caught:
        confluent_serde.decode(data, expected_record="OverloadDetection")
    assert caught.value.reason_code is SerializationReason.WRONG_RECORD_TYPE


def _zigzag_varint(number: int) -> bytes:
    """An Avro long: zigzag, then 7 bits a byte, low bits first."""
    zigzag, encoded = (number << 1) ^ (number >> 63), bytearray()
    while zigzag > 0x7F:
        encoded.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    encoded.append(zigzag)
    return bytes(encoded)


def test_giant_amount_is_refused_quickly(confluent_serde: AvroSerde) -> None:
    """A near-1 MiB decimal costs milliseconds, not the minutes fastavro's conversion takes."""
    value = from_domain(PENALTY) | {"fine_amount_yuan": Decimal("0.01")}
    data = confluent_serde.encode("PenaltyDecision", value)
    # The fine follows the content field: 0.01 yuan is 1 byte (length 1 = zigzag 0x02) of value 1.
    position = data.index("罚款2000元".encode()) + len("罚款2000元".encode())
    assert data[position : position + 2] == b"\x02\x01"
    giant = b"\x7f" + b"\xff" * (DEFAULT_MAX_PAYLOAD_BYTES - 4096)
    hostile = data[:position] + _zigzag_varint(len(giant)) + giant + data[position + 2 :]
    started = time.perf_counter()
    decoded = confluent_serde.decode(hostile)
    with pytest.raises(SerializationError) as caught:
        to_domain(decoded.record_name, decoded.value)
    assert caught.value.reason_code is SerializationReason.MAPPING_FAILED
    assert time.perf_counter() - started < 1.0


# --- mapping failures --------------------------------------------------------------------------


def test_naive_datetime_is_not_encoded() -> None:
    """from_domain refuses a naive instant rather than guess that it is UTC."""
    naive = dataclasses.replace(DETECTION, event_time=datetime(2025, 3, 14, 10, 17))
    with pytest.raises(SerializationError) as caught:
        from_domain(naive)
    assert caught.value.reason_code is SerializationReason.MAPPING_FAILED
    assert "event_time" in str(caught.value)


def test_naive_datetime_in_a_value_is_not_mapped() -> None:
    """to_domain refuses a hand-built value with a naive instant."""
    value = from_domain(DETECTION) | {"event_time": datetime(2025, 3, 14)}
    with pytest.raises(SerializationError) as caught:
        to_domain("OverloadDetection", value)
    assert caught.value.reason_code is SerializationReason.MAPPING_FAILED


def test_instant_in_another_zone_maps_to_utc() -> None:
    """An aware instant in Beijing time becomes the same instant in UTC."""
    beijing = timezone(timedelta(hours=8))
    value = from_domain(DETECTION) | {
        "event_time": DETECTION.event_time.astimezone(beijing),
    }
    event = to_domain("OverloadDetection", value)
    assert isinstance(event, OverloadDetection)
    assert event.event_time == DETECTION.event_time
    assert event.event_time.tzinfo is UTC


@pytest.mark.parametrize(
    "amount",
    [Decimal("2000.005"), Decimal("1000000000000.00"), Decimal("NaN"), Decimal("Infinity")],
    ids=["sub-fen", "thirteen integer digits", "nan", "infinity"],
)
def test_amount_avro_cannot_carry_is_not_encoded(amount: Decimal) -> None:
    """Amounts beyond decimal(14, 2) are refused rather than rounded."""
    with pytest.raises(SerializationError) as caught:
        from_domain(dataclasses.replace(PENALTY, fine_amount_yuan=amount))
    assert caught.value.reason_code is SerializationReason.MAPPING_FAILED


def test_unknown_enum_symbol_in_a_value_is_not_mapped() -> None:
    """A symbol the domain enum lacks is MAPPING_FAILED, naming the field."""
    value = from_domain(DETECTION) | {"plate_colour": "PINK"}
    with pytest.raises(SerializationError, match="plate_colour") as caught:
        to_domain("OverloadDetection", value)
    assert caught.value.reason_code is SerializationReason.MAPPING_FAILED


@pytest.mark.parametrize(
    ("event", "change", "field_name"),
    [
        (LIST_ENTRY_OBJECTION, {"action": "WITHDRAWN"}, "action"),
        (LIST_ENTRY_OBJECTION, {"subject_kind": "FLEET"}, "subject_kind"),
        (LIST_ENTRY_OBJECTION, {"target": "PUBLICATION"}, "target"),
        (LIST_ENTRY_OBJECTION, {"occurred_at": datetime(2025, 4, 2)}, "occurred_at"),  # naive
        (REPAIR_APPLICATION, {"applied_at": datetime(2025, 7, 1)}, "applied_at"),  # naive
        (REPAIR_APPLICATION, {"subject_kind": "VESSEL"}, "subject_kind"),
    ],
)
def test_lifecycle_values_that_do_not_fit_are_not_mapped(
    event: model.InputEvent, change: dict[str, Any], field_name: str
) -> None:
    """An unknown symbol or a naive instant in an objection or application is MAPPING_FAILED."""
    record_name = record_name_of(event)
    with pytest.raises(SerializationError, match=field_name) as caught:
        to_domain(record_name, from_domain(event) | change)
    assert caught.value.reason_code is SerializationReason.MAPPING_FAILED


def test_value_with_an_extra_field_is_not_mapped() -> None:
    """A field the domain type does not have is refused, not dropped."""
    with pytest.raises(SerializationError) as caught:
        to_domain("OverloadDetection", from_domain(DETECTION) | {"colour_of_cargo": "grey"})
    assert caught.value.reason_code is SerializationReason.MAPPING_FAILED


def test_record_without_a_domain_type_is_not_mapped() -> None:
    """DeadLetter has no domain type: UNKNOWN_RECORD."""
    with pytest.raises(SerializationError) as caught:
        to_domain("DeadLetter", DEAD_LETTER)
    assert caught.value.reason_code is SerializationReason.UNKNOWN_RECORD


def test_to_domain_leaves_the_value_unchanged() -> None:
    """Mapping does not convert the caller's dict in place."""
    value = from_domain(DETECTION)
    to_domain("OverloadDetection", value)
    assert value == from_domain(DETECTION)


# --- encoding failures -------------------------------------------------------------------------


def test_value_missing_a_required_field_is_not_encoded(confluent_serde: AvroSerde) -> None:
    """AVRO_ENCODE_FAILED, and the message does not quote the value (personal data)."""
    value = from_domain(DETECTION)
    del value["plate_number"]
    with pytest.raises(SerializationError) as caught:
        confluent_serde.encode("OverloadDetection", value)
    assert caught.value.reason_code is SerializationReason.AVRO_ENCODE_FAILED
    assert DRIVER_ID_NUMBER not in str(caught.value)


def test_record_without_a_schema_is_not_encoded(confluent_serde: AvroSerde) -> None:
    """Encoding an unknown record name is UNKNOWN_RECORD."""
    with pytest.raises(UnknownSchemaError) as caught:
        confluent_serde.encode("Payment", {})
    assert caught.value.reason_code is SerializationReason.UNKNOWN_RECORD


# --- the schema registry client ----------------------------------------------------------------


class FakeRegistry:
    """A Confluent-compatible registry in memory, served through httpx.MockTransport."""

    def __init__(self) -> None:
        self.schema_by_id: dict[int, str] = {}
        self.requests: list[httpx.Request] = []
        self.failing = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.failing:
            return httpx.Response(503, json={"error_code": 50301, "message": "unavailable"})
        parts = request.url.path.strip("/").split("/")
        if request.method == "GET" and parts[:2] == ["schemas", "ids"]:
            text = self.schema_by_id.get(int(parts[2]))
            if text is None:
                return httpx.Response(404, json={"error_code": 40403, "message": "not found"})
            return httpx.Response(200, json={"schema": text})
        if request.method == "POST" and parts[0] == "subjects" and parts[2] == "versions":
            text = json.loads(request.content)["schema"]
            for schema_id, known in self.schema_by_id.items():
                if known == text:
                    return httpx.Response(200, json={"id": schema_id})
            schema_id = 100 + len(self.schema_by_id)
            self.schema_by_id[schema_id] = text
            return httpx.Response(200, json={"id": schema_id})
        return httpx.Response(405)


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def registry_client(registry: FakeRegistry) -> Iterator[SchemaRegistryClient]:
    with httpx.Client(transport=httpx.MockTransport(registry.handle)) as client:
        yield SchemaRegistryClient(client, "http://registry.test:8081/")


def test_registry_client_looks_up_a_schema_by_id_once(
    registry: FakeRegistry, registry_client: SchemaRegistryClient
) -> None:
    """GET /schemas/ids/{id} returns the schema text, and a second lookup uses the cache."""
    registry.schema_by_id[7] = '"string"'
    assert registry_client.schema_text(7) == '"string"'
    assert registry_client.schema_text(7) == '"string"'
    assert [(r.method, r.url.path) for r in registry.requests] == [("GET", "/schemas/ids/7")]


def test_registry_client_reports_an_unknown_id(registry_client: SchemaRegistryClient) -> None:
    """A 404 is UnknownSchemaError with UNKNOWN_SCHEMA_ID: the record's fault."""
    with pytest.raises(UnknownSchemaError) as caught:
        registry_client.schema_text(404)
    assert caught.value.reason_code is SerializationReason.UNKNOWN_SCHEMA_ID


def test_registry_outage_is_not_a_serialization_error(
    registry: FakeRegistry, registry_client: SchemaRegistryClient
) -> None:
    """A 5xx is SchemaRegistryError, so the agent retries instead of dead-lettering."""
    registry.failing = True
    with pytest.raises(SchemaRegistryError):
        registry_client.schema_text(1)
    assert not issubclass(SchemaRegistryError, SerializationError)


def test_registry_client_registers_under_the_subject_once(
    registry: FakeRegistry, registry_client: SchemaRegistryClient
) -> None:
    """POST /subjects/{subject}/versions returns the id; a second register uses the cache."""
    first = registry_client.register("cn.gov.donga.credit.v1.DeadLetter", '"bytes"')
    second = registry_client.register("cn.gov.donga.credit.v1.DeadLetter", '"bytes"')
    assert first == second == 100
    assert [(r.method, r.url.path) for r in registry.requests] == [
        ("POST", "/subjects/cn.gov.donga.credit.v1.DeadLetter/versions")
    ]
    assert registry.requests[0].headers["content-type"] == "application/vnd.schemaregistry.v1+json"


def test_serde_with_registry_encodes_and_decodes(
    store: SchemaStore, registry: FakeRegistry, registry_client: SchemaRegistryClient
) -> None:
    """Encoding registers the current schema; a fresh serde decodes it by looking the id up."""
    writer = AvroSerde(store, RegistrySchemaIds(store, registry_client))
    data = writer.encode("LicensingDecision", from_domain(OPERATING_CERTIFICATE))
    with httpx.Client(transport=httpx.MockTransport(registry.handle)) as client:
        reader_ids = RegistrySchemaIds(store, SchemaRegistryClient(client, "http://registry.test"))
        decoded = AvroSerde(store, reader_ids).decode(data)
    assert decoded.writer_fingerprint_or_id == int.from_bytes(data[1:5], "big")
    assert to_domain(decoded.record_name, decoded.value) == OPERATING_CERTIFICATE


def test_registry_schema_of_an_unknown_record_is_refused(
    store: SchemaStore, registry: FakeRegistry, registry_client: SchemaRegistryClient
) -> None:
    """An id whose schema is a record we do not read is UNKNOWN_RECORD."""
    registry.schema_by_id[9] = json.dumps(
        {"type": "record", "name": "Payment", "fields": [{"name": "x", "type": "int"}]}
    )
    serde = AvroSerde(store, RegistrySchemaIds(store, registry_client))
    with pytest.raises(UnknownSchemaError) as caught:
        serde.decode(b"\x00\x00\x00\x00\x09\x02")
    assert caught.value.reason_code is SerializationReason.UNKNOWN_RECORD


def test_registry_schema_that_is_not_avro_is_an_unknown_id(
    store: SchemaStore, registry: FakeRegistry, registry_client: SchemaRegistryClient
) -> None:
    """Garbage under an id is UNKNOWN_SCHEMA_ID, not a crash."""
    registry.schema_by_id[11] = "{not json"
    serde = AvroSerde(store, RegistrySchemaIds(store, registry_client))
    with pytest.raises(UnknownSchemaError) as caught:
        serde.decode(b"\x00\x00\x00\x00\x0b\x02")
    assert caught.value.reason_code is SerializationReason.UNKNOWN_SCHEMA_ID


# --- the faust codec ---------------------------------------------------------------------------


def test_faust_codec_dumps_and_loads_domain_events(confluent_serde: AvroSerde) -> None:
    """AvroCodec turns an event into bytes and back into the same event."""
    codec = AvroCodec(confluent_serde, "PenaltyDecision")
    assert codec.loads(codec.dumps(PENALTY)) == PENALTY


def test_faust_codec_loads_dead_letters_as_dicts(confluent_serde: AvroSerde) -> None:
    """A record without a domain type stays an Avro dict."""
    codec = AvroCodec(confluent_serde, "DeadLetter")
    assert codec.loads(codec.dumps(DEAD_LETTER)) == DEAD_LETTER


def test_faust_codec_refuses_another_record(confluent_serde: AvroSerde) -> None:
    """A detection codec refuses a penalty's bytes and a penalty event: WRONG_RECORD_TYPE."""
    penalty_bytes = AvroCodec(confluent_serde, "PenaltyDecision").dumps(PENALTY)
    detection_codec = AvroCodec(confluent_serde, "OverloadDetection")
    for attempt in (
        lambda: detection_codec.loads(penalty_bytes),
        lambda: detection_codec.dumps(PENALTY),
    ):
        with pytest.raises(SerializationError) as caught:
            attempt()
        assert caught.value.reason_code is SerializationReason.WRONG_RECORD_TYPE


def test_faust_codec_clone_keeps_its_record(confluent_serde: AvroSerde) -> None:
    """faust rebuilds codecs from their kwargs (codec | other): the record survives."""
    clone = AvroCodec(confluent_serde, "OverloadDetection").clone()
    assert isinstance(clone, AvroCodec)
    assert clone.record_name == "OverloadDetection"
    assert clone.loads(clone.dumps(DETECTION)) == DETECTION


def _leaf_types(hint: Any) -> Iterator[Any]:
    arguments = [a for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis]
    if not arguments:
        yield hint
    for argument in arguments:
        yield from _leaf_types(argument)


def test_every_domain_field_type_is_one_the_mapping_knows() -> None:
    """A new kind of field in processors/model.py must be taught to streams/mapping.py first."""
    known = (str, int, float, bool, date, datetime, Decimal, enum.Enum)
    for domain_type in DOMAIN_TYPES.values():
        for name, hint in typing.get_type_hints(domain_type).items():
            for leaf in _leaf_types(hint):
                assert isinstance(leaf, type) and issubclass(leaf, known), (name, hint)
