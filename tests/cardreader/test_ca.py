"""Chip Authentication v1 against the simulated chip: ECDH and DH, 3DES (MSE:Set KAT) and AES (MSE:Set AT + GA)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cardreader.lds import tlv
from cardreader.lds.security_infos import (chip_authentication_info, chip_authentication_public_key_info,
                                           encode_security_infos)
from cardreader.protocol.ca import DHChipKey
from cardreader.protocol.pace import STANDARD_GROUPS
from cardreader.reader import read_document
from cardreader.sim.chip import SimulatedChip
from cardreader.transport import SimulatedTransport


@dataclass(frozen=True)
class Doc:
    files: dict
    persona: object
    ca_private_key: object
    aa_private_key: object = None


def _document(base, protocol: str, key, spki: bytes, *, with_info: bool = True) -> Doc:
    infos = [chip_authentication_public_key_info(spki, key_id=7)]
    if with_info:
        infos.append(chip_authentication_info(protocol, key_id=7))
    files = dict(base.files)
    files["DG14"] = tlv.encode(0x6E, encode_security_infos(infos))
    return Doc(files, base.persona, key)


def _ec_key():
    key = ec.generate_private_key(ec.SECP256R1())
    return key, key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)


def _dh_key():
    group = STANDARD_GROUPS[0]()
    key = DHChipKey(group, group.random_private(os.urandom))
    return key, key.spki()


CASES = [
    ("id-CA-ECDH-3DES-CBC-CBC", _ec_key, "CA-ECDH-3DES"),
    ("id-CA-ECDH-AES-CBC-CMAC-256", _ec_key, "CA-ECDH-AES-256"),
    ("id-CA-DH-3DES-CBC-CBC", _dh_key, "CA-DH-3DES"),
    ("id-CA-DH-AES-CBC-CMAC-128", _dh_key, "CA-DH-AES-128"),
]


@pytest.mark.parametrize("protocol,make_key,expected", CASES, ids=[c[2] for c in CASES])
def test_chip_authentication(protocol, make_key, expected, bac_document, demo_key):
    key, spki = make_key()
    doc = _document(bac_document, protocol, key, spki)
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok, r.error
    assert (r.clone_detection.protocol, r.clone_detection.result, r.clone_detection.detail) == ("CA", "passed", expected)
    assert r.files["DG2"] == bac_document.files["DG2"]  # read under the CA session keys


def test_key_without_info_means_3des(bac_document, demo_key):
    key, spki = _ec_key()
    doc = _document(bac_document, "", key, spki, with_info=False)
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok and r.clone_detection.detail == "CA-ECDH-3DES"


@pytest.mark.parametrize("make_key", [_ec_key, _dh_key])
def test_clone_without_the_private_key_fails(make_key, bac_document, demo_key):
    key, spki = make_key()
    other, _ = make_key()
    doc = _document(bac_document, "id-CA-ECDH-AES-CBC-CMAC-128" if make_key is _ec_key
                    else "id-CA-DH-AES-CBC-CMAC-128", other, spki)
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert not r.ok and r.error == "chip_authentication_failed"
    assert r.clone_detection.result == "failed" and not r.files
