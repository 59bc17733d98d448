"""read_document end to end against the simulated chip, in-process: PACE, BAC, CA, PA, and every bad-card case."""
from __future__ import annotations

import time

import pytest

from cardreader.lds.mrz import MRZKey
from cardreader.protocol.pace import CAN
from cardreader.reader import read_document
from cardreader.sim.chip import Faults, SimulatedChip
from cardreader.transport import SimulatedTransport


def _read(document, key, faults=None, **kw):
    return read_document(SimulatedTransport(SimulatedChip(document, faults=faults), command_timeout=0.3), key, **kw)


def test_pace_read_with_mrz(demo_document, demo_key):
    r = _read(demo_document, demo_key)
    assert r.ok, r.error
    assert r.access_control == "PACE-ECDH-GM-AES-128"
    for name in ("EF.COM", "EF.SOD", "DG1", "DG2", "DG13", "DG14", "DG15"):
        assert r.files[name] == demo_document.files[name]
        assert r.file_stats[name].size == len(demo_document.files[name])
    assert r.dg1.document_number == demo_document.persona.document_number
    assert r.face_image is not None and r.face_image.ndim == 3
    assert r.dg13
    assert r.clone_detection.protocol == "CA" and r.clone_detection.result == "passed"
    # extended length: every file in one READ BINARY (SFI selects it, no SELECT)
    assert r.file_stats["DG2"].apdus == 1
    assert "personal" not in repr(r) or demo_document.persona.surname not in repr(r)
    assert demo_document.persona.document_number not in repr(r)


def test_pace_read_with_can(demo_document, demo_persona):
    r = _read(demo_document, CAN(demo_persona.can))
    assert r.ok and r.access_control.startswith("PACE")


def test_bac_read_when_no_card_access(bac_document, demo_key):
    r = _read(bac_document, demo_key)
    assert r.ok and r.access_control == "BAC"
    assert "EF.CardAccess" not in r.files


def test_can_without_pace_is_denied(bac_document, demo_persona):
    r = _read(bac_document, CAN(demo_persona.can))
    assert not r.ok and r.error == "access_denied"


@pytest.mark.parametrize("doc", ["demo_document", "bac_document"])
def test_wrong_mrz_is_access_denied_and_no_file_data(doc, request):
    wrong = MRZKey("X00000000", "900101", "300101")
    r = _read(request.getfixturevalue(doc), wrong)
    assert not r.ok and r.error == "access_denied"
    assert set(r.files) <= {"EF.CardAccess"}


def test_wrong_can_is_access_denied(demo_document):
    r = _read(demo_document, CAN("000000"))
    assert not r.ok and r.error == "access_denied"


def test_passive_authentication_with_trust_store(demo_document, demo_key, tmp_path):
    from cardreader.pki import TrustStore
    store = TrustStore(tmp_path / "trust")
    store.add_csca(demo_document.pki.csca_cert)
    r = _read(demo_document, demo_key, trust_store=store)
    assert r.ok and r.passive_authentication.verdict == "valid"


def test_short_apdus_when_no_extended_length(demo_document, demo_key):
    r = _read(demo_document, demo_key, Faults(no_extended=True))
    assert r.ok and not r.extended_length
    size = len(demo_document.files["DG2"])
    assert r.files["DG2"] == demo_document.files["DG2"]
    assert r.file_stats["DG2"].apdus == -(-size // 223)


def test_bac_short_reads_use_the_largest_3des_block(bac_document, demo_key):
    """231 bytes under BAC's 3DES keys (CA off: its AES keys would take the block back to 223)."""
    r = _read(bac_document, demo_key, Faults(no_extended=True), clone_detection=False)
    assert r.ok and r.block_size == 231
    assert r.file_stats["DG2"].apdus == -(-len(bac_document.files["DG2"]) // 231)


def test_block_size_adapts_to_a_small_chip_buffer(demo_document, demo_key):
    r = _read(demo_document, demo_key, Faults(no_extended=True, max_read=192, target="none"))
    assert r.ok and r.block_size == 192
    assert r.files["DG2"] == demo_document.files["DG2"]


def test_extended_blocks_adapt_too(demo_document, demo_key):
    r = _read(demo_document, demo_key, Faults(max_read=4096, target="none"))
    assert r.ok and r.extended_length and r.block_size <= 4096
    assert r.files["DG2"] == demo_document.files["DG2"]


def test_no_sfi_support_falls_back_to_select(demo_document, demo_key):
    r = _read(demo_document, demo_key, Faults(no_sfi=True))
    assert r.ok and r.files["DG2"] == demo_document.files["DG2"]


FAULTS = [
    (Faults(bad_mac=True), "bad_mac"),
    (Faults(truncate=True), "malformed_sm_response"),
    (Faults(oversized=True), "malformed_response"),
    (Faults(giant_length=True), "malformed_file"),
    (Faults(wrong_sw=0x6A82), "file_not_found"),
    (Faults(wrong_sw=0x6F00), "card_error"),
    (Faults(pull=True), "card_removed"),
    (Faults(mute=True), "timeout"),
]


@pytest.mark.parametrize("faults,reason", FAULTS, ids=[r for _, r in FAULTS])
@pytest.mark.parametrize("doc", ["demo_document", "bac_document"])
def test_bad_card_ends_cleanly_with_a_reason(faults, reason, doc, demo_key, request):
    document = request.getfixturevalue(doc)
    start = time.monotonic()
    r = _read(document, demo_key, faults, deadline_s=5.0)
    assert not r.ok and r.error == reason
    assert time.monotonic() - start < 5.0
    assert "DG2" not in r.files
    if reason in ("bad_mac", "malformed_sm_response"):
        assert not r.files  # nothing kept from a broken secure channel


def test_slow_chip_is_stopped_at_the_deadline(demo_document, demo_key):
    start = time.monotonic()
    r = _read(demo_document, demo_key, Faults(delay_s=0.05), deadline_s=0.4)
    assert not r.ok and r.error == "timeout"
    assert time.monotonic() - start < 0.6
    assert 0 < r.apdus < 15


def test_deadline_ends_a_slow_read(demo_document, demo_key):
    ticks = iter(range(0, 1000))
    r = _read(demo_document, demo_key, clock=lambda: next(ticks) * 0.5, deadline_s=3.0)
    assert not r.ok and r.error == "timeout"


def test_no_card(demo_key):
    r = read_document(SimulatedTransport(None), demo_key)
    assert not r.ok and r.error == "no_card" and r.apdus == 0


@pytest.fixture(scope="session")
def aa_only_documents(demo_persona):
    """Documents without a CA key, so clone detection falls to Active Authentication: RSA and ECDSA."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from cardreader.sim.issuer import issue
    return {"rsa": issue(demo_persona, ca_key=False),
            "ecdsa": issue(demo_persona, ca_key=False, aa_key=ec.generate_private_key(ec.SECP256R1()))}


@pytest.mark.parametrize("kind", ["rsa", "ecdsa"])
def test_active_authentication_when_no_chip_authentication(kind, aa_only_documents, demo_key):
    r = _read(aa_only_documents[kind], demo_key)
    assert r.ok, r.error
    assert r.clone_detection.protocol == "AA" and r.clone_detection.result == "passed"


def test_cloned_chip_fails_active_authentication(aa_only_documents, demo_key):
    """A copy of every file with another AA key: the signature does not verify under DG15."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    genuine = aa_only_documents["rsa"]
    clone = type("Clone", (), {"files": genuine.files, "persona": genuine.persona, "ca_private_key": None,
                               "aa_private_key": rsa.generate_private_key(65537, 1024)})()
    r = _read(clone, demo_key)
    assert not r.ok and r.clone_detection.protocol == "AA" and r.clone_detection.result == "failed"


def test_cloned_chip_fails_chip_authentication(demo_document, demo_key):
    from cryptography.hazmat.primitives.asymmetric import ec
    clone = type("Clone", (), {"files": demo_document.files, "persona": demo_document.persona,
                               "aa_private_key": None,
                               "ca_private_key": ec.generate_private_key(ec.BrainpoolP256R1())})()
    r = _read(clone, demo_key)
    assert not r.ok and r.error == "chip_authentication_failed"
    assert r.clone_detection.protocol == "CA" and r.clone_detection.result == "failed"
    assert not r.files


def test_mute_card_near_the_deadline_ends_on_time(demo_document, demo_key):
    """The per-command timeout (10 s here) is cut to what is left of the 1 s read deadline."""
    transport = SimulatedTransport(SimulatedChip(demo_document, faults=Faults(mute=True)), command_timeout=10.0)
    start = time.monotonic()
    r = read_document(transport, demo_key, deadline_s=1.0)
    assert not r.ok and r.error == "timeout"
    assert time.monotonic() - start < 1.5
    assert transport.command_timeout == 10.0


@pytest.mark.parametrize("name,corrupt", [
    ("DG1", lambda d: d[:4] + b"\xff" * (len(d) - 4)),  # inner MRZ object destroyed
    ("DG2", lambda d: d[:8] + b"\x7f\x61\x84\xff\xff\xff\xff" + d[15:]),  # inner length of ~4 GB
    ("EF.COM", lambda d: d[:2] + b"\x5f\x01\x7f" + d[5:]),  # inner TLV longer than the file
])
def test_malformed_file_content_ends_the_read(name, corrupt, bac_document, demo_key):
    files = dict(bac_document.files)
    files[name] = corrupt(files[name])
    doc = type("Doc", (), {"files": files, "persona": bac_document.persona, "ca_private_key": None,
                           "aa_private_key": None})()
    r = _read(doc, demo_key)
    assert not r.ok and r.error == "malformed_file"
    assert r.dg1 is None or name != "DG1"


def test_failed_pace_is_not_downgraded_to_bac(demo_document, demo_key):
    """A chip (or a relay) that spoils PACE's mapping step ends the read; BAC is not tried."""
    chip = SimulatedChip(demo_document)
    process, sent = chip.process, []

    def spoil(apdu: bytes):
        sent.append(apdu)
        out = process(apdu)
        if apdu[:2] == b"\x10\x86" and out[2:3] == b"\x82":  # the chip's mapping public key
            out = out[:-3] + bytes((out[-3] ^ 1,)) + out[-2:]
        return out
    chip.process = spoil
    r = read_document(SimulatedTransport(chip), demo_key)
    assert not r.ok and r.error == "pace_failed"
    assert not any(a[1] == 0x82 for a in sent)  # no EXTERNAL AUTHENTICATE (BAC)
