"""PACE against the simulated chip for every mapping (GM, IM), key agreement, cipher and standardized
parameter ID this reader supports, with several PACEInfos (the parameter ID goes into MSE:Set AT), and
the typed refusal of everything else."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from cardreader.lds.security_infos import encode_security_infos, pace_info, parse_security_infos
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


CIPHERS = {"3DES": "3DES-CBC-CBC", "AES-128": "AES-CBC-CMAC-128", "AES-192": "AES-CBC-CMAC-192",
           "AES-256": "AES-CBC-CMAC-256"}
# (agreement, mapping, cipher, parameter ID): every mapping x agreement x cipher, spread over the
# standardized parameter IDs of 9303-11 table 12 (P-224, ID 10, has no Integrated Mapping)
VARIANTS = [
    ("ECDH", "GM", "3DES", 13), ("ECDH", "GM", "AES-128", 12), ("ECDH", "GM", "AES-192", 16),
    ("ECDH", "GM", "AES-256", 17), ("ECDH", "GM", "AES-256", 15), ("ECDH", "GM", "AES-128", 10),
    ("ECDH", "GM", "AES-128", 8), ("ECDH", "GM", "AES-128", 9), ("ECDH", "GM", "AES-128", 11),
    ("ECDH", "GM", "AES-128", 14), ("ECDH", "GM", "AES-256", 18),
    ("ECDH", "IM", "3DES", 13), ("ECDH", "IM", "AES-128", 13), ("ECDH", "IM", "AES-192", 12),
    ("ECDH", "IM", "AES-256", 16), ("ECDH", "IM", "AES-128", 9), ("ECDH", "IM", "AES-128", 11),
    ("ECDH", "IM", "AES-192", 14), ("ECDH", "IM", "AES-256", 17), ("ECDH", "IM", "AES-256", 18),
    ("ECDH", "IM", "AES-128", 8), ("ECDH", "IM", "AES-256", 15),
    ("DH", "GM", "3DES", 0), ("DH", "GM", "AES-128", 0), ("DH", "GM", "AES-192", 1), ("DH", "GM", "AES-256", 2),
    ("DH", "IM", "3DES", 0), ("DH", "IM", "AES-128", 0), ("DH", "IM", "AES-192", 2), ("DH", "IM", "AES-256", 1),
]


@pytest.mark.parametrize("agreement,mapping,cipher,parameter_id", VARIANTS,
                         ids=[f"{a}-{m}-{c}-{i}" for a, m, c, i in VARIANTS])
def test_pace_variant(agreement, mapping, cipher, parameter_id, demo_document, demo_key):
    doc = _with_card_access(demo_document, (f"id-PACE-{agreement}-{mapping}-{CIPHERS[cipher]}", parameter_id))
    r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok, r.error
    assert r.access_control == f"PACE-{agreement}-{mapping}-{cipher}"
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


@pytest.mark.parametrize("protocol,parameter_id", [("id-PACE-ECDH-IM-AES-CBC-CMAC-128", 10),
                                                   ("id-PACE-ECDH-GM-AES-CBC-CMAC-128", 5),
                                                   ("id-PACE-DH-GM-AES-CBC-CMAC-128", 13),
                                                   ("id-PACE-ECDH-CAM-AES-CBC-CMAC-128", 13)],
                         ids=["IM-on-P-224", "RFU-ID", "DH-on-a-curve", "CAM"])
def test_unsupported_pace_falls_back_to_bac(protocol, parameter_id, demo_document, demo_key, caplog):
    doc = _with_card_access(demo_document, (protocol, parameter_id))
    with caplog.at_level("INFO", logger="cardreader.protocol.pace"):
        r = read_document(SimulatedTransport(SimulatedChip(doc)), demo_key)
    assert r.ok and r.access_control == "BAC"
    assert protocol in caplog.text  # the log says which option was refused, and why


def test_unsupported_option_with_a_can_is_a_typed_refusal(demo_document, demo_persona):
    """With a CAN there is no BAC to fall back on: the read ends with a reason, not a session."""
    doc = _with_card_access(demo_document, ("id-PACE-ECDH-IM-AES-CBC-CMAC-128", 10))
    r = read_document(SimulatedTransport(SimulatedChip(doc)), CAN(demo_persona.can))
    assert not r.ok and r.error == "access_denied" and r.access_control == ""


@pytest.mark.parametrize("parameter_id", range(32))
def test_every_standardized_parameter_id_is_supported_or_refused_by_name(parameter_id):
    """9303-11 table 12: IDs 0-2 (RFC 5114 MODP), 8-18 (NIST and Brainpool curves); 3-7 and 19-31 RFU."""
    from cardreader.protocol import pace
    agreement = "DH" if parameter_id <= 7 else "ECDH"
    for mapping in ("GM", "IM"):
        option = _option(f"id-PACE-{agreement}-{mapping}-AES-CBC-CMAC-128", parameter_id)
        if parameter_id in (0, 1, 2) or 8 <= parameter_id <= 18 and (mapping, parameter_id) != ("IM", 10):
            assert pace.group_for(option).kind == agreement
        else:
            with pytest.raises(pace.PACEError) as e:
                pace.group_for(option)
            assert e.value.reason == "pace_unsupported" and str(parameter_id) in str(e.value)


@pytest.mark.parametrize("parameter_id,p_bits,q_bits", [(0, 1024, 160), (1, 2048, 224), (2, 2048, 256)])
def test_rfc5114_groups_are_prime_order_subgroups(parameter_id, p_bits, q_bits):
    from cardreader.protocol.pace import STANDARD_GROUPS
    group = STANDARD_GROUPS[parameter_id]()
    p, g, q = group.p, group.g, group.order
    assert (p.bit_length(), q.bit_length()) == (p_bits, q_bits)
    assert (p - 1) % q == 0 and 1 < g < p - 1 and pow(g, q, p) == 1
    for n in (p, q):  # Miller-Rabin with fixed bases: a typo in a constant makes these composite
        d, r = n - 1, 0
        while d % 2 == 0:
            d, r = d // 2, r + 1
        for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
            x = pow(a, d, n)
            assert x in (1, n - 1) or any(pow(x, 2 ** j, n) == n - 1 for j in range(1, r))


def test_issuer_writes_the_chosen_pace_variant(demo_persona, demo_key):
    from cardreader.sim.issuer import issue
    document = issue(demo_persona, pace=0, pace_protocol="id-PACE-DH-IM-3DES-CBC-CBC")
    assert [(o.name, o.parameter_id) for o in parse_security_infos(document.files["EF.CardAccess"]).pace] == \
        [("id-PACE-DH-IM-3DES-CBC-CBC", 0)]
    r = read_document(SimulatedTransport(SimulatedChip(document)), demo_key)
    assert r.ok and r.access_control == "PACE-DH-IM-3DES"


def _option(name: str, parameter_id: int):
    return parse_security_infos(encode_security_infos([pace_info(name, parameter_id)])).pace[0]


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
