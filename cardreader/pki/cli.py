"""`python -m cardreader` subcommands for PKI: trust, verify, aa, bench-pa.

`verify` exits 0 for a valid document, 1 for invalid or incomplete and 2 for
input it cannot use (missing file, not an EF.SOD argument, ...), always with
one JSON object on stdout under `--json`, never a traceback.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

from cardreader.pki.pa import PAPolicy, passive_authentication
from cardreader.pki.trust import TrustError, TrustStore, as_utc


CERT_SUFFIXES = {".der", ".cer", ".crt", ".pem"}


class UsageError(Exception):
    """Input the command cannot use; exit status 2."""


def default_store() -> Path:
    """The gate's data directory (EGATE_DATA_DIR, default ./var) + /trust."""
    return Path(os.environ.get("EGATE_DATA_DIR", "var")) / "trust"


def register(subparsers) -> None:
    trust = subparsers.add_parser("trust", help="manage the CSCA trust store")
    trust.add_argument("--store", type=Path, default=None, help="trust store directory (default: $EGATE_DATA_DIR/trust)")
    trust_sub = trust.add_subparsers(dest="trust_command", required=True)
    for name, what in (("import-masterlist", "a CMS-signed CSCA Master List"), ("import-csca", "CSCA certificate(s), DER or PEM"),
                       ("import-crl", "a CRL signed by a trusted CSCA")):
        p = trust_sub.add_parser(name, help=f"import {what}")
        p.add_argument("file", type=Path)
        p.add_argument("--store", type=Path, default=argparse.SUPPRESS)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=_trust_import, kind=name)
    p = trust_sub.add_parser("list", help="list trusted CSCAs and CRLs")
    p.add_argument("--store", type=Path, default=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_trust_list)

    verify = subparsers.add_parser("verify", help="passive authentication of EF.SOD and data group files")
    verify.add_argument("--com", type=Path)
    verify.add_argument("--sod", type=Path)
    verify.add_argument("--dg", action="append", default=[], metavar="N=FILE")
    verify.add_argument("--csca", action="append", default=[], type=Path, metavar="FILE_OR_DIR")
    verify.add_argument("--masterlist", action="append", default=[], type=Path)
    verify.add_argument("--crl", action="append", default=[], type=Path)
    verify.add_argument("--store", type=Path, help="also trust this store (read-only)")
    verify.add_argument("--at", help="judge validity at this date (YYYY-MM-DD or ISO 8601), default now")
    verify.add_argument("--stale-crl", choices=("accept", "incomplete", "invalid"), default=PAPolicy.stale_crl,
                        help="what a CRL past its nextUpdate means (default: %(default)s)")
    verify.add_argument("--require-crl", action="store_true", help="no CRL from the CSCA makes the result incomplete")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=_verify)

    aa = subparsers.add_parser("aa", help="verify an Active Authentication response")
    aa.add_argument("--dg15", type=Path, required=True)
    aa.add_argument("--dg14", type=Path)
    aa.add_argument("--challenge", required=True)
    aa.add_argument("--response", required=True)
    aa.add_argument("--json", action="store_true")
    aa.set_defaults(func=_aa)

    bench = subparsers.add_parser("bench-pa", help="time passive authentication and master list import")
    bench.add_argument("--algorithm", default="ecdsa-p256")
    bench.add_argument("--runs", type=int, default=50)
    bench.add_argument("--cscas", type=int, default=500)
    bench.set_defaults(func=_bench)


def _emit(args, obj: dict, text: str) -> None:
    print(json.dumps(obj, indent=1, default=str) if getattr(args, "json", False) else text)


def _guarded(run):
    """Turn unusable input into exit status 2 with a JSON error object."""
    def wrapper(args) -> int:
        try:
            return run(args)
        except (UsageError, TrustError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", "unusable_input" if not isinstance(exc, OSError) else "file_error")
            error = {"error": reason, "detail": str(exc)}
            print(json.dumps(error) if getattr(args, "json", False) else f"error: {reason}: {exc}",
                  file=sys.stdout if getattr(args, "json", False) else sys.stderr)
            return 2
    return wrapper


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None


def _parse_at(value: str | None) -> dt.datetime:
    try:
        return as_utc(dt.datetime.fromisoformat(value) if value else None)
    except ValueError:
        raise UsageError(f"--at {value!r} is not a date (YYYY-MM-DD)") from None


def _pem_or_der_certificates(data: bytes) -> list[bytes]:
    from asn1crypto import pem

    if pem.detect(data):
        return [der for kind, _, der in pem.unarmor(data, multiple=True) if kind == "CERTIFICATE"]
    return [data]


@_guarded
def _trust_import(args) -> int:
    store = TrustStore(args.store or default_store())
    data = _read(args.file)
    if args.kind == "import-csca":
        added = sum(store.add_csca(der) for der in _pem_or_der_certificates(data))
        _emit(args, {"imported": added}, f"imported {added} CSCA certificate(s)")
    elif args.kind == "import-masterlist":
        report = store.import_masterlist(data)
        _emit(args, {"imported": report.imported, "skipped": report.skipped, "reasons": list(report.reasons)},
              f"imported {report.imported} certificate(s), skipped {report.skipped} {list(report.reasons) or ''}")
    else:
        added = store.import_crl(data)
        _emit(args, {"imported": int(added)}, "imported CRL" if added else "CRL already present")
    return 0


@_guarded
def _trust_list(args) -> int:
    store = TrustStore(args.store or default_store())
    rows, crls = store.list(), store.crls()
    lines = [f"{r['country'] or '??'}  {r['key_id'][:16]}  {r['not_before'][:10]}..{r['not_after'][:10]}  "
             f"{'self-signed' if r['self_signed'] else 'link'}  {r['key']}  {r['subject']}" for r in rows]
    lines += [f"CRL  {c['issuer']}  next update {c['next_update']}  revoked {len(c['revoked'])}" for c in crls]
    _emit(args, {"certificates": rows, "crls": crls}, "\n".join(lines) or "(empty trust store)")
    return 0


def _load_sources(args, at: dt.datetime) -> TrustStore:
    store = TrustStore(args.store).detached() if args.store else TrustStore(None)
    if not (args.store or args.csca or args.masterlist) and (default_store() / "index.json").is_file():
        store = TrustStore(default_store()).detached()
    for path in args.csca:
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES) if path.is_dir() else [path]
        for f in files:
            for der in _pem_or_der_certificates(_read(f)):
                store.add_csca(der)
    for path in args.masterlist:
        store.import_masterlist(_read(path), at=at)
    for path in args.crl:
        store.import_crl(_read(path))
    return store


def _data_group_summary(data: bytes) -> dict:
    """L's JSON view of a data group (`cardreader.lds.files`), or why it does not parse."""
    from cardreader.lds import LDSError
    from cardreader.lds.files import describe, parse_file

    try:
        return {"size": len(data), **describe(parse_file(data))}
    except LDSError as exc:
        return {"size": len(data), "error": exc.reason}


@_guarded
def _verify(args) -> int:
    if args.sod is None:
        raise UsageError("--sod is required")
    at = _parse_at(args.at)
    dgs: dict[int, bytes] = {}
    for item in args.dg:
        number, _, path = item.partition("=")
        if not number.removeprefix("DG").isdigit() or not path or not 1 <= int(number.removeprefix("DG")) <= 16:
            raise UsageError(f"--dg {item!r}: expected N=FILE with N in 1..16")
        dgs[int(number.removeprefix("DG"))] = _read(Path(path))
    sod = _read(args.sod)
    com = _read(args.com) if args.com else None
    store = _load_sources(args, at)
    policy = PAPolicy(require_crl=args.require_crl, stale_crl=args.stale_crl)
    result = passive_authentication(sod, dgs, store, at=at, com=com, policy=policy)
    output = {"passive_authentication": result.to_json(),
              "data_groups": {str(n): _data_group_summary(d) for n, d in sorted(dgs.items())}}
    text = f"passive authentication: {result.verdict}" + (f" ({', '.join(result.reasons)})" if result.reasons else "")
    _emit(args, output, text)
    return 0 if result.verdict == "valid" else 1


@_guarded
def _aa(args) -> int:
    from cardreader.protocol.aa import verify_aa

    try:
        challenge, response = bytes.fromhex(args.challenge), bytes.fromhex(args.response)
    except ValueError:
        raise UsageError("--challenge and --response must be hex") from None
    result = verify_aa(_read(args.dg15), challenge, response, _read(args.dg14) if args.dg14 else None)
    _emit(args, {"active_authentication": result.to_json()}, f"active authentication: {result.result}"
          + (f" ({', '.join(result.reasons)})" if result.reasons else ""))
    return 0 if result.result == "passed" else 1


def _bench(args) -> int:
    from cardreader.sim.test_pki import TestPKI, sign_sod

    pki = TestPKI.create("UTO", args.algorithm)
    dgs = {1: b"\x61\x5d" + b"\x5f\x1f\x5a" + b"I<UTO" * 18, 2: b"\x75\x82\x3a\x98" + os.urandom(15000)}
    sod = sign_sod(dgs, pki)
    store = TrustStore(None)
    store.add_csca(pki.csca_cert)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        result = passive_authentication(sod, dgs, store)
        times.append(time.perf_counter() - start)
    assert result.verdict == "valid", result.reasons
    print(f"passive authentication ({args.algorithm}, DS chain + SOD + 2 DGs, 15 kB DG2): "
          f"median {statistics.median(times) * 1000:.2f} ms over {args.runs} runs")
    cscas = [pki.rollover()[0].csca_cert for _ in range(args.cscas)]  # distinct CSCA keys, one name
    masterlist = pki.masterlist(cscas + [pki.csca_cert])
    import_times = []
    for _ in range(3):
        store = TrustStore(None)
        store.add_csca(pki.csca_cert)
        start = time.perf_counter()
        report = store.import_masterlist(masterlist)
        import_times.append(time.perf_counter() - start)
    print(f"master list import ({report.imported + 1} CSCAs, {len(masterlist) // 1024} KiB): "
          f"median {statistics.median(import_times) * 1000:.1f} ms over 3 runs")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (tests, and until `python -m cardreader` lists this module)."""
    parser = argparse.ArgumentParser(prog="cardreader")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)

