"""Trust store: persistence, CSCA Master Lists (signature + signer chain before import, link
certificates kept), CRLs (signature checked, revocation applied) and the trust/verify CLI."""
from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cardreader.pki import TrustError, TrustStore, passive_authentication
from cardreader.pki.cli import main
from cardreader.sim.test_pki import TestPKI, sign_sod

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
AT = NOW + dt.timedelta(days=1)
DGS = {1: b"\x61\x03\x5f\x1f\x00", 2: b"\x75\x02\x01\x02"}
CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def uto() -> TestPKI:
    return TestPKI.create("UTO", "ecdsa-p256", now=NOW)


@pytest.fixture(scope="module")
def vnm() -> TestPKI:
    return TestPKI.create("VNM", "ecdsa-brainpoolP256r1-explicit", now=NOW)


def test_store_persists_between_runs(tmp_path, uto):
    store = TrustStore(tmp_path)
    assert store.add_csca(uto.csca_cert) is True
    assert store.add_csca(uto.csca_cert) is False
    store.import_crl(uto.crl(revoked=[uto.ds_cert]))
    again = TrustStore(tmp_path)
    assert [r["key_id"] for r in again.list()] == [r["key_id"] for r in store.list()]
    assert again.list()[0]["country"] == "UT" and again.list()[0]["self_signed"] is True
    result = passive_authentication(sign_sod(DGS, uto), DGS, again, at=AT)
    assert result.verdict == "invalid" and result.reasons == ["dsc_revoked"]
    index = json.loads((tmp_path / "index.json").read_text())
    assert len(index["certificates"]) == 1 and index["crls"][0]["revoked"] == 1


def test_pem_and_garbage(uto):
    from asn1crypto import pem

    store = TrustStore(None)
    assert store.add_csca(pem.armor("CERTIFICATE", uto.csca_cert)) is True
    with pytest.raises(TrustError) as err:
        store.add_csca(b"\x30\x03\x02\x01\x00")
    assert err.value.reason == "certificate_malformed"
    with pytest.raises(TrustError) as err:
        store.add_csca(uto.ds_cert)
    assert err.value.reason == "not_a_ca_certificate"


def test_masterlist_is_imported_only_when_its_signer_chains_to_a_trusted_csca(uto, vnm):
    masterlist = uto.masterlist([uto.csca_cert, vnm.csca_cert])
    store = TrustStore(None)
    with pytest.raises(TrustError) as err:
        store.import_masterlist(masterlist, at=AT)
    assert err.value.reason == "masterlist_signer_untrusted"
    assert store.list() == []
    store.add_csca(uto.csca_cert)
    report = store.import_masterlist(masterlist, at=AT)
    assert (report.imported, report.skipped) == (1, 0)  # UTO's CSCA was already there
    assert {r["country"] for r in store.list()} == {"UT", "VN"}
    assert passive_authentication(sign_sod(DGS, vnm), DGS, store, at=AT).verdict == "valid"


def test_tampered_masterlist_is_refused(uto, vnm):
    masterlist = bytearray(uto.masterlist([uto.csca_cert, vnm.csca_cert]))
    i = masterlist.find(vnm.csca_cert[-40:])  # inside the VNM certificate's signature
    masterlist[i] ^= 1
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    with pytest.raises(TrustError) as err:
        store.import_masterlist(bytes(masterlist), at=AT)
    assert err.value.reason == "masterlist_signature_invalid"
    assert len(store.list()) == 1


def test_masterlist_signed_by_a_foreign_key_is_refused(uto, vnm):
    forged = uto.masterlist([vnm.csca_cert], signer=vnm.ml_signer)  # VNM's signer, UTO's store
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    with pytest.raises(TrustError) as err:
        store.import_masterlist(forged, at=AT)
    assert err.value.reason == "masterlist_signer_untrusted"


def test_masterlist_with_a_bad_self_signature_skips_that_certificate(uto, vnm):
    broken = bytearray(vnm.csca_cert)
    broken[-3] ^= 1
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    report = store.import_masterlist(uto.masterlist([bytes(broken)]), at=AT)
    assert (report.imported, report.skipped) == (0, 1) and report.reasons == ("signature_invalid",)


def test_link_certificates_are_kept_and_issuers_found_by_key_identifier(uto):
    new, link = uto.rollover()
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    report = store.import_masterlist(uto.masterlist([uto.csca_cert, link]), at=AT)
    assert report.imported == 1
    rows = store.list()
    assert [r["self_signed"] for r in rows] == [True, False]
    assert rows[0]["subject"] == rows[1]["subject"]  # same DN, two keys
    # The new key is trusted through the link certificate; the DS of either key verifies.
    assert passive_authentication(sign_sod(DGS, new), DGS, store, at=AT).verdict == "valid"
    assert passive_authentication(sign_sod(DGS, uto), DGS, store, at=AT).verdict == "valid"


def test_crl_must_be_signed_by_a_trusted_csca(uto, vnm):
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    with pytest.raises(TrustError) as err:
        store.import_crl(vnm.crl(revoked=[vnm.ds_cert]))
    assert err.value.reason == "crl_issuer_unknown"
    forged = bytearray(uto.crl(revoked=[uto.ds_cert]))
    forged[-2] ^= 1
    with pytest.raises(TrustError) as err:
        store.import_crl(bytes(forged))
    assert err.value.reason == "crl_signature_invalid"
    with pytest.raises(TrustError) as err:
        store.import_crl(b"\x30\x00")
    assert err.value.reason == "crl_malformed"


def test_newest_crl_decides(uto):
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    store.import_crl(uto.crl(revoked=[uto.ds_cert], this_update=NOW - dt.timedelta(hours=20)))
    store.import_crl(uto.crl(revoked=[], this_update=NOW - dt.timedelta(hours=2)))  # reinstated
    assert passive_authentication(sign_sod(DGS, uto), DGS, store, at=AT).checks["dsc_revoked"] is False
    # re-verifying at an instant before the newer CRL existed
    earlier = NOW - dt.timedelta(hours=10)
    assert passive_authentication(sign_sod(DGS, uto), DGS, store, at=earlier).checks["dsc_revoked"] is True


def _files(tmp_path: Path, uto: TestPKI) -> dict[str, Path]:
    files = {"csca": uto.csca_cert, "sod": sign_sod(DGS, uto), "dg1": DGS[1], "dg2": DGS[2],
             "crl": uto.crl(revoked=[uto.ds_cert]), "ml": uto.masterlist()}
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.bin"
        paths[name].write_bytes(data)
    return paths


def test_cli_verify_exit_status_and_json(tmp_path, uto, capsys):
    f = _files(tmp_path, uto)
    base = ["verify", "--sod", str(f["sod"]), "--dg", f"1={f['dg1']}", "--dg", f"2={f['dg2']}",
            "--at", "2026-06-02", "--json"]
    assert main(base + ["--csca", str(f["csca"])]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passive_authentication"]["verdict"] == "valid"
    assert out["passive_authentication"]["data_group_hashes"] == {"1": True, "2": True}
    assert set(out["data_groups"]) == {"1", "2"}
    (tmp_path / "cscas").mkdir()
    (tmp_path / "cscas" / "uto.der").write_bytes(uto.csca_cert)
    (tmp_path / "cscas" / "README").write_text("not a certificate")
    assert main(base + ["--csca", str(tmp_path / "cscas"), "--crl", str(f["crl"])]) == 1  # directory of CSCAs
    assert json.loads(capsys.readouterr().out)["passive_authentication"]["reasons"] == ["dsc_revoked"]
    assert main(base + ["--store", str(tmp_path / "empty")]) == 1
    assert json.loads(capsys.readouterr().out)["passive_authentication"]["verdict"] == "incomplete"
    assert main(["verify", "--sod", str(tmp_path / "missing"), "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["error"] == "unusable_input"
    assert main(["verify", "--sod", str(f["sod"]), "--dg", "x=y", "--json"]) == 2
    assert "error" in json.loads(capsys.readouterr().out)
    assert main(["verify", "--sod", str(f["sod"]), "--at", "yesterday", "--json"]) == 2
    capsys.readouterr()


def test_cli_trust_store_commands(tmp_path, uto, capsys):
    f = _files(tmp_path, uto)
    store = tmp_path / "store"
    assert main(["trust", "--store", str(store), "import-masterlist", str(f["ml"])]) == 2  # signer not trusted yet
    assert "masterlist_signer_untrusted" in capsys.readouterr().err
    assert main(["trust", "--store", str(store), "import-csca", str(f["csca"])]) == 0
    assert main(["trust", "import-masterlist", str(f["ml"]), "--store", str(store)]) == 0
    assert main(["trust", "--store", str(store), "import-crl", str(f["crl"])]) == 0
    capsys.readouterr()
    assert main(["trust", "--store", str(store), "list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing["certificates"]) == 1 and listing["crls"][0]["revoked"] == [uto.ds_serial]
    assert main(["verify", "--sod", str(f["sod"]), "--dg", f"1={f['dg1']}", "--store", str(store),
                 "--at", "2026-06-02"]) == 1
    assert "dsc_revoked" in capsys.readouterr().out


def test_python_m_cardreader_entry_point(tmp_path, uto):
    """The same commands through `python -m cardreader` (helper P's entry point)."""
    if not (CHECKOUT / "cardreader" / "__main__.py").is_file():
        pytest.skip("cardreader/__main__.py not there yet")
    f = _files(tmp_path, uto)
    run = subprocess.run([sys.executable, "-m", "cardreader", "verify", "--sod", str(f["sod"]), "--dg",
                          f"1={f['dg1']}", "--csca", str(f["csca"]), "--at", "2026-06-02", "--json"],
                         cwd=CHECKOUT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["passive_authentication"]["verdict"] == "valid"


def test_damaged_store_is_refused_not_half_loaded(tmp_path, uto):
    store = TrustStore(tmp_path)
    store.add_csca(uto.csca_cert)
    der = next((tmp_path / "certs").iterdir())
    data = der.read_bytes()
    der.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(TrustError) as err:
        TrustStore(tmp_path)
    assert err.value.reason == "trust_store_corrupt"
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(TrustError) as err:
        TrustStore(tmp_path)
    assert err.value.reason == "trust_store_corrupt"


def test_link_certificate_needs_its_trusted_issuer(uto):
    new, link = uto.rollover()
    with pytest.raises(TrustError) as err:
        TrustStore(None).add_csca(link)
    assert err.value.reason == "link_certificate_issuer_unknown"
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    assert store.add_csca(link) is True
    assert passive_authentication(sign_sod(DGS, new), DGS, store, at=AT).verdict == "valid"
    other = TestPKI.create("UTO", "ecdsa-p256", now=NOW)
    _, foreign_link = other.rollover()
    with pytest.raises(TrustError) as err:
        store.add_csca(foreign_link)
    assert err.value.reason == "link_certificate_issuer_unknown"
    # the same foreign link claiming (by AKI) to come from the trusted CSCA
    forged = foreign_link.replace(other.csca_key.key_identifier, uto.csca_key.key_identifier)
    with pytest.raises(TrustError) as err:
        store.add_csca(forged)
    assert err.value.reason == "link_certificate_signature_invalid"


def test_masterlist_signer_needs_the_icao_extended_key_usage(uto, vnm):
    from cardreader.sim.test_pki import SigningKey

    key = SigningKey.generate("ecdsa-p256")
    cert = uto.issue(cn="Not a Master List Signer", key=key, key_usage=("digital_signature",))
    store = TrustStore(None)
    store.add_csca(uto.csca_cert)
    with pytest.raises(TrustError) as err:
        store.import_masterlist(uto.masterlist([vnm.csca_cert], signer=(key, cert)), at=AT)
    assert err.value.reason == "ml_signer_extended_key_usage"


@pytest.mark.parametrize("what", ["masterlist", "crl", "csca"])
def test_no_bit_flip_in_an_import_is_accepted_or_crashes(uto, vnm, what):
    """Every 3rd byte, high bit flipped: each import is refused with a TrustError reason, never
    accepted and never an unexpected exception (masterlists: also the unsigned CMS parts)."""
    blob, op = {"masterlist": (uto.masterlist([uto.csca_cert, vnm.csca_cert]), "import_masterlist"),
                "crl": (uto.crl(revoked=[uto.ds_cert]), "import_crl"),
                "csca": (vnm.csca_cert, "add_csca")}[what]
    for i in range(0, len(blob), 3):
        tampered = bytearray(blob)
        tampered[i] ^= 0x80
        store = TrustStore(None)
        store.add_csca(uto.csca_cert)
        with pytest.raises(TrustError):
            getattr(store, op)(bytes(tampered), **({"at": AT} if op == "import_masterlist" else {}))


def test_a_running_store_sees_imports_made_by_another_process(tmp_path, uto):
    """The gate keeps one TrustStore; the operator's `trust import-crl` must take effect without a restart."""
    gate_view = TrustStore(tmp_path)
    sod = sign_sod(DGS, uto)
    assert passive_authentication(sod, DGS, gate_view, at=AT).reasons == ["csca_not_found"]
    cli_view = TrustStore(tmp_path)
    cli_view.add_csca(uto.csca_cert)
    assert passive_authentication(sod, DGS, gate_view, at=AT).verdict == "valid"
    TrustStore(tmp_path).import_crl(uto.crl(revoked=[uto.ds_cert]))
    assert passive_authentication(sod, DGS, gate_view, at=AT).reasons == ["dsc_revoked"]
    (tmp_path / "index.json").write_text("[]")
    damaged = passive_authentication(sod, DGS, gate_view, at=AT)
    assert damaged.verdict == "incomplete" and damaged.reasons == ["trust_store_corrupt"]


def test_concurrent_imports_into_one_directory_keep_every_entry(tmp_path):
    """Several processes importing at once (operators, cron jobs) must not lose index entries."""
    import concurrent.futures

    pkis = [TestPKI.create("UTO", "ecdsa-p256", now=NOW) for _ in range(6)]
    for i, pki in enumerate(pkis):
        (tmp_path / f"{i}.der").write_bytes(pki.csca_cert)
    store = tmp_path / "store"
    cmd = [sys.executable, "-c", "import sys; from cardreader.pki.cli import main; sys.exit(main(sys.argv[1:]))"]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        runs = list(pool.map(lambda i: subprocess.run(
            cmd + ["trust", "--store", str(store), "import-csca", str(tmp_path / f"{i}.der")],
            cwd=CHECKOUT, capture_output=True, text=True, timeout=120), range(6)))
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert len(TrustStore(store).list()) == 6


def test_cli_verify_crl_policy_flags(tmp_path, uto, capsys):
    f = _files(tmp_path, uto)
    stale = tmp_path / "stale.crl"
    stale.write_bytes(uto.crl(this_update=NOW - dt.timedelta(days=100), next_update=NOW - dt.timedelta(days=10)))
    base = ["verify", "--sod", str(f["sod"]), "--dg", f"1={f['dg1']}", "--csca", str(f["csca"]),
            "--at", "2026-06-02", "--json"]
    assert main(base + ["--crl", str(stale)]) == 1
    assert json.loads(capsys.readouterr().out)["passive_authentication"]["verdict"] == "incomplete"
    assert main(base + ["--crl", str(stale), "--stale-crl", "accept"]) == 0
    assert main(base + ["--require-crl"]) == 1
    capsys.readouterr()
