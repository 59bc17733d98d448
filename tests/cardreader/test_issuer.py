"""issue(persona) → every file parses back to the persona's data."""
import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cardreader.lds.com import COM
from cardreader.lds.dg1 import DG1
from cardreader.lds.dg2 import DG2
from cardreader.lds.dg13 import DG13
from cardreader.lds.dg14 import DG14
from cardreader.lds.dg15 import DG15
from cardreader.lds.security_infos import parse_security_infos
from cardreader.lds.files import FILE_IDS, parse_file
from cardreader.lds.sod import parse_sod
from cardreader.sim.issuer import issue
from cardreader.sim.persona import Persona, load_persona


@pytest.fixture(scope="module")
def demo(demo_dir) -> Persona:
    return load_persona("demo")


@pytest.fixture(scope="module")
def issued(demo):
    return issue(demo)


def test_demo_persona(demo):
    assert demo.document_type == "ID" and demo.issuing_state == "UTO"
    assert demo.face_image_path.name == "eileen_collins_chip_derived.jpg" and demo.face_image_path.is_file()
    assert demo.date_of_expiry > dt.date(2030, 1, 1) and len(demo.can) == 6
    assert any(ord(c) > 127 for v in demo.dg13.values() for c in (v if isinstance(v, str) else "".join(v)))
    assert "Collins" not in repr(demo) and "Collins" not in str(demo)


def test_every_file_named_and_parsable(issued):
    assert set(issued.files) == {"EF.COM", "EF.SOD", "EF.CardAccess", "DG1", "DG2", "DG13", "DG14", "DG15"}
    assert set(issued.files) <= set(FILE_IDS)
    for name, data in issued.files.items():
        assert parse_file(data) is not None, name
    assert "Collins" not in repr(issued)


def test_round_trip_fields_equal_persona(issued, demo):
    mrz = DG1.parse(issued.files["DG1"]).mrz
    assert mrz.valid and mrz.format == "TD1" and mrz.document_code == "ID"
    assert (mrz.document_number, mrz.issuing_state, mrz.nationality, mrz.sex) == (
        demo.document_number, demo.issuing_state, demo.nationality, demo.sex)
    assert (mrz.date_of_birth, mrz.date_of_expiry) == (demo.date_of_birth, demo.date_of_expiry)
    assert (mrz.primary_identifier, mrz.secondary_identifier) == ("COLLINS", "EILEEN MARIE")
    assert mrz.optional_data == demo.optional_data

    face = DG2.parse(issued.files["DG2"]).faces[0]
    assert face.image_bytes == demo.face_image_bytes() and (face.width, face.height) == (240, 320)

    assert DG13.parse(issued.files["DG13"]).fields == demo.dg13

    com = COM.parse(issued.files["EF.COM"])
    assert set(com.data_groups) == {n for n in issued.files if n.startswith("DG")}


def test_sod_hashes_every_data_group(issued):
    import hashlib

    sod = parse_sod(issued.files["EF.SOD"])
    dgs = {int(n[2:]): d for n, d in issued.files.items() if n.startswith("DG")}
    assert sod.dg_hashes == {n: hashlib.sha256(d).digest() for n, d in dgs.items()}


def test_active_authentication_key_matches_dg15(issued):
    dg15 = DG15.parse(issued.files["DG15"])
    assert dg15.key.public_numbers() == issued.aa_private_key.public_key().public_numbers()


def test_chip_authentication_key_and_pace_announced(issued):
    from cryptography.hazmat.primitives import serialization

    dg14 = DG14.parse(issued.files["DG14"])
    [ca] = dg14.infos.chip_authentication
    [key] = dg14.infos.chip_authentication_keys
    assert (ca.agreement, ca.cipher, key.protocol) == ("ECDH", "AES-128", "id-PK-ECDH")
    assert key.public_key.dump() == issued.ca_private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert dg14.infos.active_authentication is None  # RSA AA needs no DG14 entry
    [pace] = parse_security_infos(issued.files["EF.CardAccess"]).pace
    assert (pace.name, pace.parameter_id) == ("id-PACE-ECDH-GM-AES-CBC-CMAC-128", 13)


def test_ecdsa_active_authentication_and_p256_pace(demo):
    aa = ec.generate_private_key(ec.SECP256R1())
    doc = issue(demo, aa_key=aa, ca_key=False, pace="secp256r1")
    dg14 = DG14.parse(doc.files["DG14"])
    assert dg14.infos.active_authentication["signature_algorithm"].native == "ecdsa-plain-SHA256"
    assert not dg14.infos.chip_authentication_keys
    assert DG15.parse(doc.files["DG15"]).public_key.kind == "ec"
    assert parse_security_infos(doc.files["EF.CardAccess"]).pace[0].parameter_id == 12


def test_options_drop_chip_keys(demo):
    doc = issue(demo, aa_key=False, ca_key=False, pace=False)
    assert "DG15" not in doc.files and doc.aa_private_key is None and doc.ca_private_key is None
    assert "EF.CardAccess" not in doc.files and "DG14" not in doc.files


def test_impostor_persona_is_another_face(demo_dir, demo):
    impostor = load_persona("impostor")
    assert impostor.face_image_path.is_file()
    assert impostor.face_image_bytes() != demo.face_image_bytes()
    doc = issue(impostor)
    assert DG1.parse(doc.files["DG1"]).mrz.valid


def test_passport_persona_with_dg11_dg12(demo):
    passport = demo.model_copy(update={
        "document_type": "P", "document_number": "L898902C3", "optional_data": "ZE184226B",
        "dg11": {"full_name": "COLLINS<<EILEEN MARIE", "place_of_birth": ["ELMIRA", "NEW YORK"]},
        "dg12": {"issuing_authority": "UTO PASSPORT OFFICE", "date_of_issue": "20211119"}})
    doc = issue(passport, aa_key=False, ca_key=False, pace=False)
    mrz = DG1.parse(doc.files["DG1"]).mrz
    assert mrz.format == "TD3" and mrz.valid and mrz.optional_data == "ZE184226B"
    assert parse_file(doc.files["DG11"]).fields == passport.dg11
    assert parse_file(doc.files["DG12"]).fields == passport.dg12
    assert set(COM.parse(doc.files["EF.COM"]).data_groups) == {"DG1", "DG2", "DG11", "DG12", "DG13"}


def test_given_keys_and_pki_are_used(demo):
    from cardreader.lds.sod import parse_sod
    from cardreader.sim.test_pki import TestPKI

    pki = TestPKI.create(country="UTO", algorithm="ecdsa-p256")
    aa = ec.generate_private_key(ec.SECP384R1())
    doc = issue(demo, pki, aa_key=aa)
    assert doc.pki is pki and doc.aa_private_key is aa
    assert parse_sod(doc.files["EF.SOD"]).certificates[0].dump() == pki.ds_cert
