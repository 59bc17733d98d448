"""The simulated chip enforces access control and secure messaging like a real eMRTD chip."""
from __future__ import annotations

import pytest

from cardreader.apdu import (CommandAPDU, PlainChannel, SecurityStatusNotSatisfied, read_binary, read_file,
                             select_aid, select_ef)
from cardreader.lds.mrz import MRZKey
from cardreader.protocol import bac
from cardreader.protocol.sm import AccessControlError, SecureMessagingError
from cardreader.sim.chip import SimulatedChip
from cardreader.transport import SimulatedTransport


@pytest.fixture
def chip(bac_document):
    return SimulatedChip(bac_document)


def test_no_file_data_before_access_control(chip):
    ch = PlainChannel(SimulatedTransport(chip))
    select_aid(ch)
    select_ef(ch, 0x0101)
    with pytest.raises(SecurityStatusNotSatisfied):
        read_binary(ch, 0, 16)
    assert ch.transmit(CommandAPDU(0, 0xB0, 0x81, 0, ne=16).to_bytes()).sw == 0x6982  # SFI form too


def test_select_mf_is_refused_like_vietnams_cccd(chip):
    ch = PlainChannel(SimulatedTransport(chip))
    assert ch.transmit(bytes.fromhex("00A40000023F00")).sw == 0x6D00


def test_wrong_bac_key_gives_6300(chip):
    ch = PlainChannel(SimulatedTransport(chip))
    select_aid(ch)
    with pytest.raises(AccessControlError) as e:
        bac.perform_bac(ch, MRZKey("X00000000", "900101", "300101"))
    assert e.value.reason == "access_denied"


def test_plain_command_ends_the_secure_session(chip, demo_key):
    ch = PlainChannel(SimulatedTransport(chip))
    select_aid(ch)
    sm = bac.perform_bac(ch, demo_key)
    assert read_file(sm, sfi=0x1E, fid=0x011E)[:1] == b"\x60"
    select_ef(ch, 0x011E)  # in plain: the chip drops the session keys
    with pytest.raises(SecurityStatusNotSatisfied):
        read_binary(ch, 0, 4)
    with pytest.raises(SecureMessagingError):
        read_binary(sm, 0, 4)


def test_forged_command_mac_ends_the_session(chip, demo_key):
    ch = PlainChannel(SimulatedTransport(chip))
    select_aid(ch)
    sm = bac.perform_bac(ch, demo_key)
    protected = sm.session.protect(CommandAPDU(0, 0xB0, 0x9E, 0, ne=4))
    forged = protected.to_bytes()[:-2] + bytes((protected.to_bytes()[-2] ^ 1,)) + b"\x00"
    assert ch.transmit(forged).sw == 0x6988
    with pytest.raises(SecureMessagingError):
        read_binary(sm, 0, 4)


def test_b1_read_above_32767(chip, demo_key):
    doc = chip.files
    doc["DG2"] = b"\x75\x83\x01\x00\x00" + bytes(range(256)) * 256  # 65536-byte value
    ch = PlainChannel(SimulatedTransport(chip))
    select_aid(ch)
    sm = bac.perform_bac(ch, demo_key)
    data = read_file(sm, fid=0x0102)
    assert data == doc["DG2"]
