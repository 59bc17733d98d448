"""The CSCA trust store: certificates, CSCA Master Lists and CRLs (ICAO 9303-12).

Only what was authenticated goes in: a CSCA file the operator imports on
purpose, the certificates of a Master List whose CMS signature and signer
chain verify against a CSCA already trusted, and CRLs whose signature
verifies with their CSCA. Issuers are looked up by AuthorityKeyIdentifier →
SubjectKeyIdentifier, because countries reuse distinguished names across key
rollovers; the DN is only a fallback for certificates without an AKI.

Persistence is a plain directory: `certs/<sha256>.der`, `crls/<sha256>.der`
and `index.json` (rewritten atomically), so an operator can inspect it with
ordinary tools and a crash never leaves half an index.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import cms, core, crl, pem, x509

from cardreader.lds import ASN1_DECODE_ERRORS
from cardreader.pki import signatures
from cardreader.pki.signatures import SignatureError

MASTER_LIST_OID = "2.23.136.1.1.2"
DOCUMENT_TYPE_LIST_OID = "2.23.136.1.1.6.2"
ML_SIGNER_EKU_OID = "2.23.136.1.1.3"
# Extensions a 9303-12 certificate may carry; any other *critical* one is a failure (RFC 5280 §4.2).
KNOWN_EXTENSIONS = {
    "2.5.29.14", "2.5.29.35", "2.5.29.15", "2.5.29.16", "2.5.29.32", "2.5.29.17", "2.5.29.18",
    "2.5.29.19", "2.5.29.31", "2.5.29.37", "2.5.29.46", "2.5.29.20", "2.5.29.28",
    "2.23.136.1.1.6.1",  # nameChange
    "2.23.136.1.1.6.2",  # documentTypeList
}


class CertificateSet(core.SetOf):
    _child_spec = x509.Certificate


class CscaMasterList(core.Sequence):
    # CscaMasterList ::= SEQUENCE {
    _fields = [
        ("version", core.Integer),  # version CscaMasterListVersion,  -- v0(0)
        ("cert_list", CertificateSet),  # certList SET OF Certificate }
    ]


DECODE_ERRORS = ASN1_DECODE_ERRORS


class DocumentTypes(core.SetOf):
    _child_spec = core.PrintableString


class DocumentTypeListSyntax(core.Sequence):
    # DocumentTypeListSyntax ::= SEQUENCE {
    _fields = [
        ("version", core.Integer),  # version DocumentTypeListVersion,  -- v0(0)
        ("doc_type_list", DocumentTypes),  # docTypeList SET OF DocumentType }
    ]


def document_types(cert: x509.Certificate) -> list[str] | None:
    """The DS certificate's DocumentTypeList (9303-12), or None when it has none."""
    for ext in cert["tbs_certificate"]["extensions"] or []:
        if ext["extn_id"].dotted == DOCUMENT_TYPE_LIST_OID:
            syntax = DocumentTypeListSyntax.load(ext["extn_value"].contents, strict=True)
            return [t.native for t in syntax["doc_type_list"]]
    return None


class TrustError(Exception):
    """An import was refused; `reason` is a code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _exclusive(method):
    """Run an import under an exclusive lock on the store directory, on a fresh view of it,
    so two `trust import-*` processes cannot lose each other's index entries."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        if self.path is None:
            return method(self, *args, **kwargs)
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.refresh()
                return method(self, *args, **kwargs)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return locked


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(at: dt.datetime | None) -> dt.datetime:
    """The instant to judge validity at: now by default; a naive datetime is taken as UTC."""
    if at is None:
        return utcnow()
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.timezone.utc)


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate from DER or PEM; raise `TrustError` when it is not one."""
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    try:
        cert = x509.Certificate.load(data, strict=True)
        cert.native  # parse everything now, not at first use
    except DECODE_ERRORS as exc:
        raise TrustError("certificate_malformed", str(exc)) from exc
    return cert


def key_identifier(cert: x509.Certificate) -> bytes:
    """The SubjectKeyIdentifier, or the RFC 5280 method-1 hash when the extension is absent."""
    return cert.key_identifier or cert.public_key.sha1


def is_self_signed(cert: x509.Certificate) -> bool:
    aki = cert.authority_key_identifier
    if aki is not None and aki != key_identifier(cert):
        return False
    # byte equality first: asn1crypto's RFC 4518 name comparison is slow and rarely needed
    return cert.subject.dump() == cert.issuer.dump() or cert.subject == cert.issuer


def country_of(name: x509.Name) -> str | None:
    return name.native.get("country_name")


def certificate_problems(cert: x509.Certificate, at: dt.datetime, role: str) -> list[str]:
    """Reason codes for what is wrong with `cert` itself (not its issuer) at `at`.

    `role` is 'csca', 'ds' or 'ml_signer' (9303-12 §7.1 profiles).
    """
    problems = []
    prefix = {"csca": "csca", "ds": "dsc", "ml_signer": "ml_signer"}[role]
    tbs = cert["tbs_certificate"]
    if tbs["version"].native != "v3":
        problems.append(f"{prefix}_version")
    if tbs["signature"].dump() != cert["signature_algorithm"].dump():
        problems.append(f"{prefix}_signature_algorithm_mismatch")
    if at < cert.not_valid_before:
        problems.append(f"{prefix}_not_yet_valid")
    if at > cert.not_valid_after:
        problems.append(f"{prefix}_expired")
    for ext in tbs["extensions"] or []:
        if ext["critical"].native and ext["extn_id"].dotted not in KNOWN_EXTENSIONS:
            problems.append(f"{prefix}_unknown_critical_extension")
    usage = cert.key_usage_value.native if cert.key_usage_value else set()
    if role == "csca":
        if not (cert.basic_constraints_value and cert.basic_constraints_value["ca"].native):
            problems.append("csca_not_ca")
        if "key_cert_sign" not in usage:
            problems.append("csca_key_usage")
    elif "digital_signature" not in usage:
        problems.append(f"{prefix}_key_usage")
    return problems


def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> None:
    """Check `issuer`'s key signed `cert`; raise `SignatureError`."""
    key = signatures.load_public_key(issuer.public_key)
    signatures.verify(key, cert["signature_algorithm"], cert["signature_value"].native,
                      cert["tbs_certificate"].dump())


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        verify_issued_by(cert, issuer)
        return True
    except SignatureError:
        return False


@dataclass(frozen=True)
class CMSCheck:
    """Outcome of verifying one CMS SignerInfo over its eContent."""

    message_digest_valid: bool | None  # None when there are no signed attributes
    signature_valid: bool
    reasons: tuple[str, ...]


def verify_signer_info(signer: cms.SignerInfo, econtent: bytes, content_type: str,
                       public_key: signatures.PublicKey) -> CMSCheck:
    """messageDigest == hash(eContent) AND the signature over the signed attributes (re-tagged as
    SET OF), or over eContent itself when there are none (RFC 5652 §5.4)."""
    reasons: list[str] = []
    try:
        digest_name = signatures.hash_name(signer["digest_algorithm"])
    except SignatureError as exc:
        return CMSCheck(None, False, (exc.reason,))
    attrs = signer["signed_attrs"]
    md_ok: bool | None = None
    if isinstance(attrs, core.Void) or len(attrs) == 0:
        signed_bytes = econtent
    else:
        by_type: dict[str, list] = {}
        for attr in attrs:
            by_type.setdefault(attr["type"].native, []).extend(attr["values"])
        md = by_type.get("message_digest", [])
        ct = by_type.get("content_type", [])
        if len(md) != 1 or len(ct) != 1:
            reasons.append("signed_attributes_malformed")
            md_ok = False
        else:
            md_ok = md[0].native == hashlib.new(digest_name, econtent).digest()
            if not md_ok:
                reasons.append("message_digest_mismatch")
            if ct[0].dotted != content_type:
                reasons.append("content_type_attribute_mismatch")
                md_ok = False
        # The signature covers the DER of the attributes with the SET OF tag (0x31), not [0] IMPLICIT.
        signed_bytes = b"\x31" + attrs.dump()[1:]
    try:
        signatures.verify(public_key, signer["signature_algorithm"], signer["signature"].native, signed_bytes,
                          digest_hint=digest_name)
        sig_ok = True
    except SignatureError as exc:
        sig_ok = False
        reasons.append("sod_signature_invalid" if exc.reason == "signature_invalid" else exc.reason)
    return CMSCheck(md_ok, sig_ok, tuple(reasons))


def find_signer_certificate(signed_data: cms.SignedData) -> x509.Certificate | None:
    """The embedded certificate the SignerInfo names (issuerAndSerialNumber or subjectKeyIdentifier)."""
    sid = signed_data["signer_infos"][0]["sid"]
    certs = signed_data["certificates"]
    for choice in [] if isinstance(certs, core.Void) else certs:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            if cert.issuer == sid.chosen["issuer"] and cert.serial_number == sid.chosen["serial_number"].native:
                return cert
        elif key_identifier(cert) == sid.chosen.native:
            return cert
    return None


@dataclass
class _Entry:
    sha256: str
    cert: x509.Certificate
    source: str


@dataclass
class _CRL:
    sha256: str
    crl: crl.CertificateList
    issuer_key_id: bytes

    @property
    def revoked(self) -> set[int]:
        return {r["user_certificate"].native for r in self.crl["tbs_cert_list"]["revoked_certificates"] or []}

    @property
    def this_update(self) -> dt.datetime:
        return self.crl["tbs_cert_list"]["this_update"].native

    @property
    def next_update(self) -> dt.datetime | None:
        return self.crl["tbs_cert_list"]["next_update"].native


@dataclass(frozen=True)
class Revocation:
    """What the CRLs say about one certificate: revoked True/False, or None (no CRL from its CSCA)."""

    revoked: bool | None
    stale: bool = False
    crl_next_update: dt.datetime | None = None


@dataclass(frozen=True)
class ImportReport:
    imported: int
    skipped: int
    reasons: tuple[str, ...] = ()


@dataclass
class TrustStore:
    """CSCA certificates (self-signed and link), and the CRLs that revoke DS certificates.

    `path=None` keeps everything in memory (tests, one-off verification).
    """

    path: Path | None = None
    _certs: dict[str, _Entry] = field(default_factory=dict, repr=False)
    _crls: dict[str, _CRL] = field(default_factory=dict, repr=False)

    _loaded_mtime: tuple[int, int] | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.path is not None:
            self.path = Path(self.path)
            self._load()

    def _index_mtime(self) -> tuple[int, int] | None:
        """Identity of the index file: atomic replacement gives every write a new inode."""
        try:
            st = (self.path / "index.json").stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _load(self) -> None:
        mtime = self._index_mtime()
        certs: dict[str, _Entry] = {}
        crls: dict[str, _CRL] = {}
        if mtime is not None:
            try:
                data = json.loads((self.path / "index.json").read_text())
                for row in data["certificates"]:
                    cert = load_certificate(self._read_checked("certs", row["sha256"]))
                    certs[row["sha256"]] = _Entry(row["sha256"], cert, row.get("source", "file"))
                for row in data["crls"]:
                    der = self._read_checked("crls", row["sha256"])
                    crls[row["sha256"]] = _CRL(row["sha256"], crl.CertificateList.load(der),
                                               bytes.fromhex(row["issuer_key_id"]))
            except (OSError, ValueError, KeyError, TypeError, TrustError) as exc:
                # A damaged store must not silently trust less (or more): refuse to use it.
                raise TrustError("trust_store_corrupt", f"{self.path}: {exc}") from exc
        self._certs, self._crls, self._loaded_mtime = certs, crls, mtime

    def _read_checked(self, sub: str, sha: str) -> bytes:
        der = (self.path / sub / f"{sha}.der").read_bytes()
        if hashlib.sha256(der).hexdigest() != sha:
            raise ValueError(f"{sub}/{sha}.der does not match its name")
        return der

    def refresh(self) -> bool:
        """Reload when another process (the `trust` CLI) changed the directory; True if reloaded.

        A long-running gate calls this before each verification, so an
        imported CRL or master list takes effect without a restart.
        """
        if self.path is None or self._index_mtime() == self._loaded_mtime:
            return False
        self._load()
        return True

    def detached(self) -> TrustStore:
        """An in-memory copy: later imports do not touch the directory."""
        return TrustStore(None, dict(self._certs), dict(self._crls))

    # -- persistence -------------------------------------------------------------------------

    def _write(self, sub: str, sha: str, der: bytes) -> None:
        if self.path is None:
            return
        folder = self.path / sub
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{sha}.der"
        if not target.exists():
            _atomic_write(target, der)

    def _save_index(self) -> None:
        if self.path is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        rows = [{"sha256": e.sha256, "source": e.source, **_describe(e.cert)} for e in self._certs.values()]
        crls = [{"sha256": c.sha256, "issuer_key_id": c.issuer_key_id.hex(),
                 "issuer": c.crl.issuer.human_friendly, "this_update": c.this_update.isoformat(),
                 "next_update": c.next_update.isoformat() if c.next_update else None,
                 "revoked": len(c.revoked)} for c in self._crls.values()]
        _atomic_write(self.path / "index.json",
                      json.dumps({"certificates": rows, "crls": crls}, indent=1).encode())
        self._loaded_mtime = self._index_mtime()

    def _remember(self, cert: x509.Certificate, source: str) -> bool:
        der = cert.dump()
        sha = hashlib.sha256(der).hexdigest()
        if sha in self._certs:
            return False
        self._certs[sha] = _Entry(sha, cert, source)
        self._write("certs", sha, der)
        return True

    # -- imports -----------------------------------------------------------------------------

    @_exclusive
    def add_csca(self, cert_der: bytes, *, source: str = "file") -> bool:
        """Trust one CSCA certificate (DER or PEM) given out of band. Returns False if already known.

        A self-signed CSCA must carry a valid self-signature; a link
        certificate must be signed by a CSCA already trusted (import the old
        CSCA first), so a damaged or forged certificate cannot slip in as a "link".
        """
        cert = load_certificate(cert_der)
        if not (cert.basic_constraints_value and cert.basic_constraints_value["ca"].native):
            raise TrustError("not_a_ca_certificate", cert.subject.human_friendly)
        if is_self_signed(cert):
            try:
                verify_issued_by(cert, cert)
            except SignatureError as exc:
                raise TrustError("csca_self_signature_invalid", exc.reason) from exc
        else:
            issuers = self._candidates(cert.authority_key_identifier, cert.issuer)
            if not issuers:
                raise TrustError("link_certificate_issuer_unknown", cert.issuer.human_friendly)
            if not any(_signed_by(cert, issuer) for issuer in issuers):
                raise TrustError("link_certificate_signature_invalid", cert.subject.human_friendly)
        added = self._remember(cert, source)
        if added:
            self._save_index()
        return added

    @_exclusive
    def import_masterlist(self, data: bytes, *, at: dt.datetime | None = None) -> ImportReport:
        """Import a CSCA Master List after verifying its CMS signature and its signer's chain."""
        at = as_utc(at)
        try:
            content_info = cms.ContentInfo.load(data, strict=True)
            signed_data = content_info["content"]
            if content_info["content_type"].native != "signed_data":
                raise TrustError("masterlist_not_signed_data")
            encap = signed_data["encap_content_info"]
            if encap["content_type"].dotted != MASTER_LIST_OID:
                raise TrustError("masterlist_content_type", encap["content_type"].dotted)
            econtent = encap["content"].contents
            master_list = CscaMasterList.load(econtent, strict=True)
            certs = list(master_list["cert_list"])
            if master_list["version"].native != 0:
                raise TrustError("masterlist_version", str(master_list["version"].native))
            if len(signed_data["signer_infos"]) != 1:
                raise TrustError("masterlist_signer_count")
            signer = signed_data["signer_infos"][0]
            expected = "v1" if signer["sid"].name == "issuer_and_serial_number" else "v3"
            if signed_data["version"].native != "v3" or signer["version"].native != expected:
                raise TrustError("masterlist_version", "SignedData must be v3 and SignerInfo match its sid")
            announced = [signatures.hash_name(a) for a in signed_data["digest_algorithms"]]
            if signatures.hash_name(signer["digest_algorithm"]) not in announced:
                raise TrustError("masterlist_digest_algorithms_mismatch")
            signer_cert = find_signer_certificate(signed_data)
            if signer_cert is None:
                raise TrustError("masterlist_signer_certificate_missing")
            signer_cert.native
            check = verify_signer_info(signer, econtent, MASTER_LIST_OID,
                                       signatures.load_public_key(signer_cert.public_key))
        except SignatureError as exc:
            raise TrustError("masterlist_signer_key_invalid", exc.reason) from exc
        except DECODE_ERRORS as exc:
            raise TrustError("masterlist_malformed", str(exc)) from exc
        if not (check.signature_valid and check.message_digest_valid is not False):
            raise TrustError("masterlist_signature_invalid", ",".join(check.reasons))
        problems = certificate_problems(signer_cert, at, "ml_signer")
        if problems:
            raise TrustError(problems[0], signer_cert.subject.human_friendly)
        usage = signer_cert.extended_key_usage_value
        if usage is None or ML_SIGNER_EKU_OID not in {u.dotted for u in usage}:
            # 9303-12 §7.1.1: the Master List Signer carries id-icao-cscaMasterListSigningKey
            raise TrustError("ml_signer_extended_key_usage", signer_cert.subject.human_friendly)
        if not self.issuer_of(signer_cert, at).chain_valid:
            raise TrustError("masterlist_signer_untrusted", signer_cert.issuer.human_friendly)
        imported, skipped, reasons = 0, 0, []
        for cert in certs:
            try:
                cert["tbs_certificate"]["validity"].native  # the parts the store reads must decode
                cert.subject.native
                if is_self_signed(cert):
                    verify_issued_by(cert, cert)
            except (*DECODE_ERRORS, SignatureError) as exc:
                skipped += 1
                reasons.append(getattr(exc, "reason", "certificate_malformed"))
                continue
            imported += self._remember(cert, "masterlist")
        self._save_index()
        return ImportReport(imported, skipped, tuple(sorted(set(reasons))))

    @_exclusive
    def import_crl(self, data: bytes) -> bool:
        """Import a CRL whose signature verifies with a trusted CSCA; returns False if already known."""
        if pem.detect(data):
            _, _, data = pem.unarmor(data)
        try:
            cert_list = crl.CertificateList.load(data, strict=True)
            cert_list.native
        except DECODE_ERRORS as exc:
            raise TrustError("crl_malformed", str(exc)) from exc
        tbs = cert_list["tbs_cert_list"]
        if tbs["signature"].dump() != cert_list["signature_algorithm"].dump():
            raise TrustError("crl_signature_algorithm_mismatch")
        for ext in tbs["crl_extensions"] or []:
            if ext["critical"].native and ext["extn_id"].dotted not in KNOWN_EXTENSIONS:
                raise TrustError("crl_unknown_critical_extension", ext["extn_id"].dotted)
        candidates = self._candidates(cert_list.authority_key_identifier, cert_list.issuer)
        if not candidates:
            raise TrustError("crl_issuer_unknown", cert_list.issuer.human_friendly)
        for issuer in candidates:
            usage = issuer.key_usage_value.native if issuer.key_usage_value else set()
            if "crl_sign" not in usage:
                continue  # this CSCA key may not sign CRLs (RFC 5280 §4.2.1.3)
            try:
                signatures.verify(signatures.load_public_key(issuer.public_key), cert_list["signature_algorithm"],
                                  cert_list["signature"].native, tbs.dump())
            except SignatureError:
                continue
            sha = hashlib.sha256(data).hexdigest()
            if sha in self._crls:
                return False
            self._crls[sha] = _CRL(sha, cert_list, key_identifier(issuer))
            self._write("crls", sha, data)
            self._save_index()
            return True
        raise TrustError("crl_signature_invalid", cert_list.issuer.human_friendly)

    # -- queries -----------------------------------------------------------------------------

    def list(self) -> list[dict]:
        """One summary row per CSCA certificate (subject, country, key id, validity, source)."""
        return [{"sha256": e.sha256, "source": e.source, **_describe(e.cert)} for e in self._certs.values()]

    def crls(self) -> list[dict]:
        return [{"issuer": c.crl.issuer.human_friendly, "this_update": c.this_update.isoformat(),
                 "next_update": c.next_update.isoformat() if c.next_update else None,
                 "revoked": sorted(c.revoked)} for c in self._crls.values()]

    def _candidates(self, aki: bytes | None, issuer_name: x509.Name) -> list[x509.Certificate]:
        if aki is not None:
            return [e.cert for e in self._certs.values() if key_identifier(e.cert) == aki]
        return [e.cert for e in self._certs.values() if e.cert.subject == issuer_name]

    def issuer_of(self, cert: x509.Certificate, at: dt.datetime) -> IssuerCheck:
        """Find the trusted CSCA that signed `cert` and check the link (signature, CSCA validity/profile)."""
        candidates = self._candidates(cert.authority_key_identifier, cert.issuer)
        if not candidates:
            return IssuerCheck(None, False, None, ("csca_not_found",))
        reasons: list[str] = []
        for csca in candidates:
            try:
                verify_issued_by(cert, csca)
            except SignatureError as exc:
                reasons.append("dsc_signature_invalid" if exc.reason == "signature_invalid" else exc.reason)
                continue
            problems = certificate_problems(csca, at, "csca")
            if not problems:
                return IssuerCheck(csca, True, True, ())
            reasons.extend(problems)
        return IssuerCheck(candidates[0], True, False, tuple(dict.fromkeys(reasons)))

    def revocation(self, cert: x509.Certificate, issuer: x509.Certificate, at: dt.datetime) -> Revocation:
        """The newest CRL from `issuer`'s key decides; staleness is reported, not judged, here."""
        issuer_id = key_identifier(issuer)
        mine = [c for c in self._crls.values() if c.issuer_key_id == issuer_id and c.this_update <= at]
        if not mine:
            return Revocation(None)
        newest = max(mine, key=lambda c: c.this_update)
        stale = newest.next_update is not None and newest.next_update < at
        return Revocation(cert.serial_number in newest.revoked, stale, newest.next_update)


@dataclass(frozen=True)
class IssuerCheck:
    csca: x509.Certificate | None
    found: bool
    chain_valid: bool | None
    reasons: tuple[str, ...]


def _describe(cert: x509.Certificate) -> dict:
    return {
        "subject": cert.subject.human_friendly,
        "country": country_of(cert.subject),
        "serial": format(cert.serial_number, "x"),
        "key_id": key_identifier(cert).hex(),
        "authority_key_id": (cert.authority_key_identifier or b"").hex() or None,
        "self_signed": is_self_signed(cert),
        "not_before": cert.not_valid_before.isoformat(),
        "not_after": cert.not_valid_after.isoformat(),
        "key": signatures_description(cert),
    }


def signatures_description(cert: x509.Certificate) -> str:
    try:
        return signatures.load_public_key(cert.public_key).description
    except SignatureError as exc:
        return f"unusable ({exc.reason})"


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
