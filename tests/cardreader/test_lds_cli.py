"""`parse FILE --json`: any single LDS file, recognised by its tag, printed as JSON."""
import argparse
import json

import pytest

from cardreader.lds import files
from cardreader.sim.issuer import issue
from cardreader.sim.persona import load_persona


@pytest.fixture(scope="module")
def issued(demo_dir):
    return issue(load_persona("demo"))


def _run(*argv) -> int:
    parser = argparse.ArgumentParser()
    files.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.mark.parametrize("name", ["EF.COM", "EF.SOD", "EF.CardAccess", "DG1", "DG2", "DG13", "DG14", "DG15"])
def test_every_issued_file_as_json(issued, name, tmp_path, capsys):
    path = tmp_path / name
    path.write_bytes(issued.files[name])
    assert _run("parse", str(path), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["file"] == name and out["size"] == len(issued.files[name])
    if name == "DG1":
        assert out["document_number"] == issued.persona.document_number and out["valid"] is True
    if name == "DG2":
        face = out["faces"][0]
        assert (face["image_format"], face["width"], face["height"]) == ("jpeg", 240, 320)
        assert face["image_size"] == len(issued.persona.face_image_bytes())
        assert "image_bytes" not in face
    if name == "DG13":
        assert out["sex"] == "Nữ" and out["father_name"] == "James Collins"
    if name == "EF.SOD":
        assert set(out["data_group_hashes"]) == {"DG1", "DG2", "DG13", "DG14", "DG15"}


def test_malformed_file_reports_reason(tmp_path, capsys):
    path = tmp_path / "bad"
    path.write_bytes(bytes.fromhex("61844000000000"))
    assert _run("parse", str(path), "--json") == 2
    assert json.loads(capsys.readouterr().out)["error"] == "truncated"


def test_plain_output_hides_personal_data(issued, tmp_path, capsys):
    path = tmp_path / "dg1"
    path.write_bytes(issued.files["DG1"])
    assert _run("parse", str(path)) == 0
    assert "COLLINS" not in capsys.readouterr().out


def test_python_m_cardreader_parse(issued, tmp_path):
    import subprocess
    import sys

    path = tmp_path / "dg2"
    path.write_bytes(issued.files["DG2"])
    out = subprocess.run([sys.executable, "-m", "cardreader", "parse", str(path), "--json"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert json.loads(out)["faces"][0]["image_format"] == "jpeg"
