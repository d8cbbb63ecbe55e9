"""Decoding never fails with anything but SerializationError, whatever bytes arrive.

The agents dead-letter a record on SerializationError and crash on anything else, so one odd
payload from a station must never take the worker down: random bytes, and valid encodings with
flipped bits, cut short, extended or given another record's header, all stay inside the contract.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codecs import AvroSerde, LocalSchemaIds, SchemaStore, WireFormat
from streams.errors import SerializationError, SerializationReason
from streams.mapping import DOMAIN_TYPES, from_domain, record_name_of, to_domain
from tests.unit.test_codecs import DEAD_LETTER, DOMAIN_PAYLOADS

FUZZ = settings(max_examples=300, deadline=None)

_STORE = SchemaStore.from_directory()
SERDE = AvroSerde(_STORE, LocalSchemaIds.load(_STORE))
_SINGLE_OBJECT_SERDE = AvroSerde(
    _STORE, LocalSchemaIds.load(_STORE), wire_format=WireFormat.SINGLE_OBJECT
)

VALID_ENCODINGS = [
    serde.encode(record_name_of(event), from_domain(event))
    for serde in (SERDE, _SINGLE_OBJECT_SERDE)
    for event in DOMAIN_PAYLOADS
] + [serde.encode("DeadLetter", DEAD_LETTER) for serde in (SERDE, _SINGLE_OBJECT_SERDE)]

# Every header a valid payload can start with: the fuzzed bodies reach fastavro under each schema.
VALID_HEADERS = sorted(
    {data[:5] for data in VALID_ENCODINGS if data[0] == 0}
    | {data[:10] for data in VALID_ENCODINGS if data[0] != 0}
    | {b"\xc3\x01" + schema.fingerprint for schema in _STORE.schemas}
)


def decode_and_map(data: bytes) -> None:
    """What an agent does with a raw value: decode, then map input records to domain events."""
    decoded = SERDE.decode(data)
    if decoded.record_name in DOMAIN_TYPES:
        to_domain(decoded.record_name, decoded.value)


def assert_only_serialization_errors(data: bytes) -> None:
    try:
        decode_and_map(data)
    except SerializationError as exc:
        assert isinstance(exc.reason_code, SerializationReason)


Mutation = Callable[[bytes], bytes]


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    """One edit of a payload: flip a bit, cut, extend, splice, or swap the header."""
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "overwrite", "delete", "header"]))
    position = draw(st.integers(min_value=0, max_value=1 << 12))
    noise = draw(st.binary(min_size=1, max_size=16))
    bit = draw(st.integers(min_value=0, max_value=7))
    header = draw(st.sampled_from(VALID_HEADERS))

    def mutate(data: bytes) -> bytes:
        at = position % (len(data) + 1)
        if kind == "flip" and at < len(data):
            return data[:at] + bytes([data[at] ^ (1 << bit)]) + data[at + 1 :]
        if kind == "truncate":
            return data[:at]
        if kind == "extend":
            return data + noise
        if kind == "overwrite":
            return data[:at] + noise + data[at + len(noise) :]
        if kind == "delete":
            return data[:at] + data[at + len(noise) :]
        # Another (valid) header in front of this body: it is read with the wrong schema.
        body_start = 5 if data[:1] == b"\x00" else 10
        return header + data[body_start:]

    return mutate


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_serialization_errors(data: bytes) -> None:
    """Arbitrary bytes either decode or raise SerializationError."""
    assert_only_serialization_errors(data)


@FUZZ
@given(st.sampled_from(VALID_HEADERS), st.binary(max_size=512))
def test_random_bodies_behind_valid_headers_raise_only_serialization_errors(
    header: bytes, body: bytes
) -> None:
    """Random bytes under every known schema reach fastavro and stay inside the contract."""
    assert_only_serialization_errors(header + body)


@FUZZ
@given(st.sampled_from(VALID_ENCODINGS), st.lists(mutations(), min_size=1, max_size=4))
def test_mutated_valid_encodings_raise_only_serialization_errors(
    data: bytes, edits: list[Mutation]
) -> None:
    """Valid payloads with bits flipped, cut, extended or re-headed stay inside the contract."""
    for edit in edits:
        data = edit(data)
    assert_only_serialization_errors(data)


@pytest.mark.parametrize("data", VALID_ENCODINGS)
def test_every_valid_encoding_decodes_and_maps(data: bytes) -> None:
    """The fuzzing starts from payloads that are valid (so a mutation is what breaks them)."""
    decode_and_map(data)


def test_every_truncation_of_a_valid_encoding_is_refused() -> None:
    """Cutting a payload anywhere is a SerializationError, never silently a shorter record."""
    for data in VALID_ENCODINGS:
        for cut in range(len(data)):
            with pytest.raises(SerializationError):
                decode_and_map(data[:cut])
