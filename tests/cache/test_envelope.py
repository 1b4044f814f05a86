from __future__ import annotations

import pytest

from gateway.cache.envelope import SCHEMA_VERSION, EnvelopeError, decode, encode


def test_envelope_round_trip_keeps_payload_time_and_generations() -> None:
    raw = encode("tenant-a", "getMessage/t/m?", ("g1",), b"\x00payload", 1234.5)
    entry, generations = decode(raw, "tenant-a", "getMessage/t/m?")
    assert entry.payload == b"\x00payload" and entry.stored_at == 1234.5
    assert generations == ("g1",)


def test_envelope_other_tenant_or_key_is_foreign() -> None:
    raw = encode("tenant-a", "k", (), b"p", 1.0)
    for tenant, key in (("tenant-b", "k"), ("tenant-a", "k2")):
        with pytest.raises(EnvelopeError) as err:
            decode(raw, tenant, key)
        assert err.value.reason == "foreign"


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_envelope_any_flipped_byte_is_rejected(position: int) -> None:
    raw = bytearray(encode("t", "k", ("g",), b"payload", 1.0))
    raw[position] ^= 0x01
    with pytest.raises(EnvelopeError):
        decode(bytes(raw), "t", "k")


def test_envelope_other_schema_version_is_rejected() -> None:
    raw = bytearray(encode("t", "k", (), b"p", 1.0))
    raw[4] = SCHEMA_VERSION + 1
    with pytest.raises(EnvelopeError) as err:
        decode(bytes(raw), "t", "k")
    assert err.value.reason == "version"


@pytest.mark.parametrize("raw", [b"", b"garbage", b"MGWC", b"\x00" * 64])
def test_envelope_garbage_is_corrupt(raw: bytes) -> None:
    with pytest.raises(EnvelopeError):
        decode(raw, "t", "k")


@pytest.mark.parametrize("generations", [(), ("",), ("", "a1"), ("abc",)])
def test_envelope_generations_round_trip_exactly(generations: tuple[str, ...]) -> None:
    raw = encode("t", "k", generations, b"p", 1.0)
    assert decode(raw, "t", "k")[1] == generations
