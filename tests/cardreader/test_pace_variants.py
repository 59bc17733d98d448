"""PACE against the simulated chip for every mapping, curve/group and cipher this reader supports,
and with several PACEInfos (the parameter ID goes into MSE:Set AT)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from cardreader.lds.security_infos import encode_security_infos, pace_info
from cardreader.protocol.pace import CAN
from cardreader.reader import read_document
from cardreader.sim.chip import SimulatedChip
from cardreader.transport import SimulatedTransport


@dataclass(frozen=True)
class Doc:
    files: dict
    persona: object
    aa_private_key: object = None
    ca_private_key: object = None


def _with_card_access(document, *infos) -> Doc:
    files = dict(document.files)
    files["EF.CardAccess"] = encode_security_infos([pace_info(p, i) for p, i in infos])
    return Doc(files, document.persona, document.aa_private_key, document.ca_private_key)


VARIANTS = [
    ("id-PACE-ECDH-GM-3DES-CBC-CBC", 13, "PACE-ECDH-GM-3DES"),
    ("id-PACE-ECDH-GM-AES-CBC-CMAC-128", 12, "PACE-ECDH-GM-AES-128"),
    ("id-PACE-ECDH-GM-AES-CBC-CMAC-192", 16, "PACE-ECDH-GM-AES-192"),
    ("id-PACE-ECDH-GM-AES-CBC-CMAC-256", 17, "PACE-ECDH-GM-AES-256"),
    ("id-PACE-ECDH-GM-AES-CBC-CMAC-256", 15, "PACE-ECDH-GM-AES-256"),
    ("id-PACE-DH-GM-AES-CBC-CMAC-128", 0, "PACE-DH-GM-AES-128"),
    ("id-PACE-DH-GM-3DES-CBC-CBC", 0, "PACE-DH-GM-3DES"),
]


@pytest.mark.parametrize("protocol,parameter_id,expected", VARIANTS, ids=[f"{v[2]}-{v[1]}" for v in VARIANTS])
def test_pace_variant(protocol, parameter_id, expected, demo_document, demo_key):
    doc = _with_card_access(demo_document, (protocol, parameter_id))
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok, r.error
    assert r.access_control == expected
    assert r.files["DG2"] == demo_document.files["DG2"]


def test_several_pace_infos_send_the_parameter_id(demo_document, demo_persona):
    doc = _with_card_access(demo_document, ("id-PACE-ECDH-GM-AES-CBC-CMAC-128", 13),
                            ("id-PACE-ECDH-GM-AES-CBC-CMAC-128", 12))
    sent = []
    chip = SimulatedChip(doc)
    process = chip.process
    chip.process = lambda apdu: (sent.append(apdu), process(apdu))[1]
    r = read_document(SimulatedTransport(chip), CAN(demo_persona.can))
    assert r.ok, r.error
    mse = [a for a in sent if a[:4] == bytes.fromhex("0022C1A4")]
    assert mse and b"\x84\x01" in mse[0]


def test_unsupported_pace_falls_back_to_bac(demo_document, demo_key):
    doc = _with_card_access(demo_document, ("id-PACE-ECDH-IM-AES-CBC-CMAC-128", 13))
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok and r.access_control == "BAC"


def _explicit_ec(curve) -> bytes:
    from asn1crypto import keys
    from asn1crypto.core import Integer
    fp, g, size = curve.curve, curve.generator, curve.baselen
    return keys.SpecifiedECDomain({
        "version": "ecdpVer1",
        "field_id": {"field_type": "prime_field", "parameters": Integer(fp.p())},
        "curve": {"a": fp.a().to_bytes(size, "big"), "b": fp.b().to_bytes(size, "big")},
        "base": b"\x04" + g.x().to_bytes(size, "big") + g.y().to_bytes(size, "big"),
        "order": curve.order, "cofactor": 1}).dump()


def _explicit_dh() -> bytes:
    from asn1crypto import keys

    from cardreader.protocol.pace import STANDARD_GROUPS
    group = STANDARD_GROUPS[0]()
    return keys.DomainParameters({"p": group.p, "g": group.g, "q": group.order}).dump()


def _with_explicit(document, protocol, kind, algorithm, parameters_der, parameter_id=32) -> Doc:
    from cardreader.lds.security_infos import pace_domain_parameter_info
    files = dict(document.files)
    files["EF.CardAccess"] = encode_security_infos([
        pace_info(protocol, parameter_id),
        pace_domain_parameter_info(kind, algorithm, parameters_der, parameter_id)])
    return Doc(files, document.persona, document.aa_private_key, document.ca_private_key)


@pytest.mark.parametrize("case", ["ec", "dh"])
def test_explicit_domain_parameters(case, demo_document, demo_key):
    from ecdsa import curves
    if case == "ec":
        doc = _with_explicit(demo_document, "id-PACE-ECDH-GM-AES-CBC-CMAC-128", "id-PACE-ECDH-GM",
                             "1.2.840.10045.2.1", _explicit_ec(curves.BRAINPOOLP256r1))
    else:
        doc = _with_explicit(demo_document, "id-PACE-DH-GM-AES-CBC-CMAC-128", "id-PACE-DH-GM",
                             "1.2.840.10046.2.1", _explicit_dh(), parameter_id=40)
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok, r.error
    assert r.access_control == ("PACE-ECDH-GM-AES-128" if case == "ec" else "PACE-DH-GM-AES-128")


def test_weak_explicit_curve_is_refused(demo_document, demo_key):
    """EF.CardAccess is unsigned: a 160-bit curve offered there is not used (BAC instead)."""
    from ecdsa import curves
    doc = _with_explicit(demo_document, "id-PACE-ECDH-GM-AES-CBC-CMAC-128", "id-PACE-ECDH-GM",
                         "1.2.840.10045.2.1", _explicit_ec(curves.BRAINPOOLP160r1))
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok and r.access_control == "BAC"
