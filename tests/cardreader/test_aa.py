"""Active Authentication: ISO/IEC 9796-2 scheme 1 (ICAO 9303-11 Appendix F worked example),
plain ECDSA with the hash DG14 names, the INTERNAL AUTHENTICATE exchange, and the `aa` CLI."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from ecdsa.util import sigencode_string

from cardreader.apdu import CardError, ResponseAPDU
from cardreader.lds import tlv
from cardreader.lds.security_infos import active_authentication_info, encode_security_infos
from cardreader.pki import iso9796_2
from cardreader.pki.cli import main
from cardreader.pki.signatures import load_public_key
from cardreader.protocol.aa import active_authentication, verify_aa
from cardreader.sim.test_pki import SigningKey, aa_sign

VECTORS = Path(__file__).parent / "pki_vectors"
APPENDIX_F = json.loads((VECTORS / "icao9303_11_appendix_f_aa.json").read_text())
CHALLENGE = bytes.fromhex(APPENDIX_F["rnd_ifd"])


def dg15(public_key) -> bytes:
    return tlv.encode(0x6F, public_key.public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))


def dg14(algorithm: str) -> bytes:
    return tlv.encode(0x6E, encode_security_infos([active_authentication_info(algorithm)]))


@pytest.fixture(scope="module")
def rsa1024():
    return rsa.generate_private_key(65537, 1024)


@pytest.fixture(scope="module")
def rsa2048():
    return rsa.generate_private_key(65537, 2048)


def test_appendix_f_message_representative():
    m1 = bytes.fromhex(APPENDIX_F["m1"])
    assert iso9796_2.m1_length(APPENDIX_F["modulus_bits"]) == len(m1) == 106  # c - 4 = 848 bits
    f = iso9796_2.encode(m1, CHALLENGE, APPENDIX_F["modulus_bits"], APPENDIX_F["digest"])
    assert f.hex().upper() == APPENDIX_F["f"]
    assert f[-21:-1].hex().upper() == APPENDIX_F["h"]


def test_appendix_f_sign_recover_verify(rsa1024):
    """Appendix F steps 10-18 with a key of its size (the example publishes none)."""
    m1 = bytes.fromhex(APPENDIX_F["m1"])
    signature = iso9796_2.sign(rsa1024, CHALLENGE, m1=m1)
    assert iso9796_2.recover(rsa1024.public_key(), signature).hex().upper() == APPENDIX_F["f"]
    recovered = iso9796_2.verify(rsa1024.public_key(), signature, CHALLENGE)
    assert recovered.m1 == m1 and recovered.digest == "sha1" and recovered.implicit_trailer
    result = verify_aa(dg15(rsa1024.public_key()), CHALLENGE, signature)
    assert result.passed and result.algorithm == "rsa-iso9796-2-sha1"


@pytest.mark.parametrize("digest,trailer", [("sha1", "33cc"), ("sha224", "38cc"), ("sha256", "34cc"),
                                            ("sha384", "36cc"), ("sha512", "35cc")])
def test_explicit_trailers(rsa2048, digest, trailer):
    signature = iso9796_2.sign(rsa2048, CHALLENGE, digest=digest, implicit=False)
    assert iso9796_2.recover(rsa2048.public_key(), signature)[-2:].hex() == trailer
    result = verify_aa(dg15(rsa2048.public_key()), CHALLENGE, signature)
    assert result.passed and result.algorithm == f"rsa-iso9796-2-{digest}"


def test_signer_may_return_n_minus_signature(rsa1024):
    n = rsa1024.public_key().public_numbers().n
    s = int.from_bytes(iso9796_2.sign(rsa1024, CHALLENGE), "big")
    assert verify_aa(dg15(rsa1024.public_key()), CHALLENGE, (n - s).to_bytes(128, "big")).passed


def test_rsa_failures(rsa1024, rsa2048):
    key = dg15(rsa1024.public_key())
    signature = iso9796_2.sign(rsa1024, CHALLENGE)
    other = bytes([CHALLENGE[0] ^ 1]) + CHALLENGE[1:]
    assert verify_aa(key, other, signature).reasons == ["aa_signature_invalid"]
    assert verify_aa(key, CHALLENGE, signature[:-1] + bytes([signature[-1] ^ 1])).result == "failed"
    assert verify_aa(key, CHALLENGE, signature[1:]).reasons == ["aa_signature_length"]
    assert verify_aa(key, CHALLENGE, b"\xff" * 128).reasons == ["aa_signature_length"]  # >= n
    # a signature by another chip (a clone with its own key)
    assert verify_aa(key, CHALLENGE, iso9796_2.sign(rsa2048, CHALLENGE)).result == "failed"
    # raw RSA of a value without the 9796-2 structure
    numbers = rsa1024.private_numbers()
    junk = pow(int.from_bytes(b"\x6b" + b"\x01" * 126 + b"\xbc", "big"), numbers.d, numbers.public_numbers.n)
    assert verify_aa(key, CHALLENGE, junk.to_bytes(128, "big")).reasons == ["aa_bad_header"]
    junk = pow(int.from_bytes(b"\x6a" + b"\x01" * 126 + b"\x3c", "big"), numbers.d, numbers.public_numbers.n)
    assert verify_aa(key, CHALLENGE, junk.to_bytes(128, "big")).reasons == ["aa_bad_trailer"]


@pytest.mark.parametrize("curve,algorithm,digest", [
    (ec.SECP256R1(), "ecdsa-plain-SHA256", "sha256"), (ec.SECP384R1(), "ecdsa-plain-SHA384", "sha384"),
    (ec.BrainpoolP256R1(), "ecdsa-plain-SHA1", "sha1"), (ec.SECP521R1(), "ecdsa-plain-SHA512", "sha512"),
    (ec.BrainpoolP384R1(), "ecdsa-plain-SHA224", "sha224"),
])
def test_ecdsa_plain_signatures_with_the_hash_dg14_names(curve, algorithm, digest):
    key = ec.generate_private_key(curve)
    response = aa_sign(key, CHALLENGE, digest)
    assert len(response) == 2 * ((curve.key_size + 7) // 8)
    result = verify_aa(dg15(key.public_key()), CHALLENGE, response, dg14(algorithm))
    assert result.passed and result.algorithm == f"ecdsa-plain-{digest}"
    wrong_hash = "ecdsa-plain-SHA1" if digest != "sha1" else "ecdsa-plain-SHA256"
    assert verify_aa(dg15(key.public_key()), CHALLENGE, response, dg14(wrong_hash)).result == "failed"


def test_ecdsa_on_explicit_domain_parameters():
    key = SigningKey.generate("ecdsa-brainpoolP224r1-explicit")  # DG15 with a curve pyca lacks
    response = key.private.sign_deterministic(CHALLENGE, hashfunc=hashlib.sha256, sigencode=sigencode_string)
    dg15_bytes = tlv.encode(0x6F, key.spki.dump())
    assert load_public_key(key.spki).curve == "BRAINPOOLP224r1"
    assert verify_aa(dg15_bytes, CHALLENGE, response, dg14("ecdsa-plain-SHA256")).passed
    assert verify_aa(dg15_bytes, CHALLENGE, response[::-1], dg14("ecdsa-plain-SHA256")).result == "failed"


def test_ecdsa_without_active_authentication_info_is_not_performed():
    key = ec.generate_private_key(ec.SECP256R1())
    response = aa_sign(key, CHALLENGE)
    result = verify_aa(dg15(key.public_key()), CHALLENGE, response)
    assert result.result == "not_performed" and result.reasons == ["aa_info_missing"]
    result = verify_aa(dg15(key.public_key()), CHALLENGE, response, b"\x6e\x02\x31\x00")
    assert result.result == "not_performed" and result.reasons == ["aa_info_missing"]
    assert verify_aa(dg15(key.public_key()), CHALLENGE, response, b"\x6e\x01").reasons == ["dg14_malformed"]


def test_der_ecdsa_response_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(CHALLENGE, ec.ECDSA(hashes.SHA256()))
    result = verify_aa(dg15(key.public_key()), CHALLENGE, der, dg14("ecdsa-plain-SHA256"))
    assert result.result == "failed"


def test_malformed_dg15_and_challenge(rsa1024):
    assert verify_aa(b"\x6f\x03\x30\x01\x00", CHALLENGE, b"").reasons == ["dg15_malformed"]
    assert verify_aa(b"\x61\x00", CHALLENGE, b"").reasons == ["dg15_malformed"]
    assert verify_aa(dg15(rsa1024.public_key()), CHALLENGE[:7], b"").reasons == ["aa_challenge_length"]


class Chip:
    """A channel whose card answers INTERNAL AUTHENTICATE with `key` (or a status word)."""

    def __init__(self, key, sw: int = 0x9000):
        self.key, self.sw, self.commands = key, sw, []

    def send(self, cmd):
        self.commands.append(cmd)
        if self.sw != 0x9000:
            raise CardError(self.sw)
        return ResponseAPDU(aa_sign(self.key, cmd.data), 0x9000)


def test_internal_authenticate_exchange_uses_a_fresh_challenge(rsa2048):
    chip = Chip(rsa2048)
    first = active_authentication(chip, dg15(rsa2048.public_key()), None)
    second = active_authentication(chip, dg15(rsa2048.public_key()), None)
    assert first.passed and second.passed
    cmd = chip.commands[0]
    assert (cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data)) == (0x00, 0x88, 0x00, 0x00, 8)
    assert cmd.ne == 256
    assert chip.commands[0].data != chip.commands[1].data
    assert first.challenge == chip.commands[0].data


def test_exchange_with_a_clone_and_with_a_card_error(rsa1024, rsa2048):
    clone = Chip(rsa1024)  # answers with a key that is not the one in DG15
    assert active_authentication(clone, dg15(rsa2048.public_key()), None).result == "failed"
    refusing = Chip(rsa2048, sw=0x6D00)
    result = active_authentication(refusing, dg15(rsa2048.public_key()), None)
    assert result.result == "failed" and result.reasons == ["aa_card_error_6D00"]
    fixed = active_authentication(Chip(rsa2048), dg15(rsa2048.public_key()), None, rng=lambda n: b"\x01" * n)
    assert fixed.challenge == b"\x01" * 8


def test_cli_aa(tmp_path, capsys):
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "dg15").write_bytes(dg15(key.public_key()))
    (tmp_path / "dg14").write_bytes(dg14("ecdsa-plain-SHA256"))
    response = aa_sign(key, CHALLENGE).hex()
    args = ["aa", "--dg15", str(tmp_path / "dg15"), "--dg14", str(tmp_path / "dg14"),
            "--challenge", CHALLENGE.hex(), "--json"]
    assert main(args + ["--response", response]) == 0
    assert json.loads(capsys.readouterr().out)["active_authentication"]["result"] == "passed"
    assert main(args + ["--response", "00" * 64]) == 1
    assert json.loads(capsys.readouterr().out)["active_authentication"]["result"] == "failed"
    assert main(args + ["--response", "zz"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)

