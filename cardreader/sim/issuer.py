"""The simulated document issuer: a persona in, every file of its chip out.

This is the production line's twin: it personalises the LDS files (DG1 from
the MRZ, DG2 from the face photo, DG13 national data, DG14/DG15 chip keys,
EF.COM, EF.CardAccess) and has the test PKI's Document Signer sign EF.SOD.
Key generation is the slow part, so default keys and the default PKI are made
once per process; pass your own keys or PKI to get distinct ones.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cardreader.lds import com, dg1, dg2, dg11, dg12, dg13, dg14, dg15
from cardreader.lds import security_infos as si
from cardreader.sim.persona import Persona
from cardreader.sim.test_pki import TestPKI, sign_sod


@dataclass(frozen=True, repr=False)
class IssuedDocument:
    files: dict[str, bytes]  # names as in cardreader.lds.files.FILE_IDS
    aa_private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None
    ca_private_key: ec.EllipticCurvePrivateKey | None
    pki: TestPKI
    persona: Persona

    def dg(self, number: int) -> bytes:
        return self.files[f"DG{number}"]

    def __repr__(self) -> str:
        return f"IssuedDocument(files={sorted(self.files)}, <personal data hidden>)"


@functools.lru_cache(maxsize=None)
def default_aa_key(bits: int = 1024) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.lru_cache(maxsize=None)
def default_ca_key(curve: str = "brainpoolP256r1") -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(_CURVES[curve]())


@functools.lru_cache(maxsize=None)
def default_pki(country: str = "UTO") -> TestPKI:
    return TestPKI.create(country=country)


_CURVES = {"brainpoolP256r1": ec.BrainpoolP256R1, "secp256r1": ec.SECP256R1}


def issue(persona: Persona, pki: TestPKI | None = None, *,
          aa_key: bool | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = True,
          ca_key: bool | ec.EllipticCurvePrivateKey = True, pace: bool | str | int = True,
          pace_protocol: str = "id-PACE-ECDH-GM-AES-CBC-CMAC-128") -> IssuedDocument:
    """Personalise a chip for `persona`.

    `aa_key` / `ca_key`: True for the per-process default key, False for none
    (no DG15 / no DG14 chip authentication), or a private key to use.
    An EC `aa_key` means ECDSA Active Authentication, announced in DG14.
    `pace`: write EF.CardAccess with one PACEInfo for `pace_protocol` (any
    id-PACE-{DH,ECDH}-{GM,IM}-… name) on brainpoolP256r1 (True), on the named
    curve ('secp256r1') or on a standardized domain parameter ID of 9303-11
    table 12 (an int, e.g. 0 for the 1024-bit MODP group); False: BAC only.
    """
    pki = pki or default_pki(persona.issuing_state)
    aa = default_aa_key() if aa_key is True else (aa_key or None)
    ca = default_ca_key() if ca_key is True else (ca_key or None)

    image = persona.face_image_bytes()
    width, height = dg2.image_dimensions(image)
    dgs: dict[int, bytes] = {1: dg1.build_dg1(persona.mrz), 2: dg2.build_dg2(image, width, height)}
    if persona.dg11:
        dgs[11] = dg11.build_dg11(persona.dg11)
    if persona.dg12:
        dgs[12] = dg12.build_dg12(persona.dg12)
    if persona.dg13:
        dgs[13] = dg13.build_dg13(persona.dg13)
    aa_ecdsa = isinstance(aa, ec.EllipticCurvePrivateKey)
    if ca is not None or aa_ecdsa:
        dgs[14] = dg14.build_dg14(ca.public_key() if ca else None,
                                  aa_signature_algorithm="ecdsa-plain-SHA256" if aa_ecdsa else None)
    if aa is not None:
        dgs[15] = dg15.build_dg15(aa.public_key())

    files = {f"DG{n}": data for n, data in sorted(dgs.items())}
    files["EF.COM"] = com.build_com(sorted(dgs))
    files["EF.SOD"] = sign_sod(dgs, pki)
    if pace is not False:
        parameter_id = 13 if pace is True else dg14.PARAMETER_IDS[pace] if isinstance(pace, str) else pace
        files["EF.CardAccess"] = si.encode_security_infos([si.pace_info(pace_protocol, parameter_id)])
    return IssuedDocument(files=files, aa_private_key=aa, ca_private_key=ca, pki=pki, persona=persona)
