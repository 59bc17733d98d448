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
