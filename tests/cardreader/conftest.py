"""cardreader fixtures: an issued demo document (cached per session) and, for `pcsc` tests,
a private pcscd with the vpcd virtual reader, started and stopped by PID."""
from __future__ import annotations

import pytest

from cardreader.lds.dg1 import DG1


@pytest.fixture(scope="session")
def demo_persona():
    from cardreader.sim.persona import load_persona
    return load_persona("demo")


@pytest.fixture(scope="session")
def demo_document(demo_persona):
    from cardreader.sim.issuer import issue
    return issue(demo_persona)


@pytest.fixture(scope="session")
def bac_document(demo_persona):
    from cardreader.sim.issuer import issue
    return issue(demo_persona, pace=False)


@pytest.fixture(scope="session")
def demo_key(demo_document):
    return DG1.parse(demo_document.files["DG1"]).mrz.bac_key()
