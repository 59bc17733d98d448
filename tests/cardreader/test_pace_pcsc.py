"""PACE Integrated Mapping through the real stack: the simulated chip behind pcscd + vpcd, read with the
`read` command as an operator would."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from cardreader.lds.security_infos import encode_security_infos, pace_info
from cardreader.sim.chip import SimulatedChip

pytestmark = pytest.mark.pcsc


def test_pace_ecdh_im_read_through_pcscd(pcscd, virtual_card, demo_document, demo_persona, tmp_path, capsys):
    from cardreader.__main__ import main
    files = dict(demo_document.files)
    files["EF.CardAccess"] = encode_security_infos([pace_info("id-PACE-ECDH-IM-AES-CBC-CMAC-128", 13)])
    virtual_card(SimulatedChip(replace(demo_document, files=files)))
    p = demo_persona
    mrz = f"{p.document_number},{p.date_of_birth:%y%m%d},{p.date_of_expiry:%y%m%d}"
    code = main(["read", "--reader", pcscd.reader, "--mrz", mrz, "--out", str(tmp_path), "--json", "--wait", "5"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"], out["error"]
    assert out["access_control"] == "PACE-ECDH-IM-AES-128"
    assert out["clone_detection"]["result"] == "passed"
    assert (tmp_path / "DG2.bin").read_bytes() == demo_document.files["DG2"]
