"""cardreader fixtures: an issued demo document (cached per session) and, for `pcsc` tests,
a virtual card on the shared private pcscd (tests/conftest.py)."""
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


# --------------------------------------------------------------------------- pcscd + vpcd

@pytest.fixture
def virtual_card(pcscd):
    """Place a `SimulatedChip` on the vpcd reader: `virtual_card(chip)`; taken away after the test,
    and the fixture waits until pcscd has seen the removal, so the next test starts with an empty reader."""
    from cardreader.sim.vpcd import VirtualCard
    from cardreader.transport import PcscTransport
    cards: list[VirtualCard] = []

    def place(chip):
        card = VirtualCard(chip, port=pcscd.port).start()
        cards.append(card)
        return card

    yield place
    for card in cards:
        card.stop()
    watcher = PcscTransport(pcscd.reader)
    try:
        assert watcher.wait_for_removal(10.0), "pcscd still sees the virtual card"
    finally:
        watcher.close()
