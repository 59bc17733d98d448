"""`python -m cardreader SUBCOMMAND`: read a document, run the simulated card, benchmark reads, and more.

Subcommands come from the modules in `COMMAND_MODULES`; each exposes
`register(subparsers)` and sets `func(args) -> int` on its parsers. To add
yours, append the module name to the tuple.
"""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

COMMAND_MODULES = (
    "cardreader.__main__",  # read, sim-card, bench-read
    "cardreader.pki.cli",  # trust, verify, aa
    "cardreader.scanner.cli",  # mrz
    "cardreader.lds.files",  # parse
    "cardreader.fuzz",  # fuzz
)


# --------------------------------------------------------------------------- read

def _key(args):
    from cardreader.lds.mrz import MRZKey
    from cardreader.protocol.pace import CAN
    if args.can:
        return CAN(args.can)
    parts = args.mrz.split(",")
    if len(parts) != 3 or not all(len(p) == 6 and p.isdigit() for p in parts[1:]):
        raise SystemExit("--mrz wants DOCNO,YYMMDD,YYMMDD (document number, birth date, expiry date)")
    return MRZKey(parts[0].upper(), parts[1], parts[2])


def _dg1_json(mrz) -> dict:
    fields = ("format", "document_code", "issuing_state", "document_number", "primary_identifier",
              "secondary_identifier", "nationality", "sex", "date_of_birth", "date_of_expiry", "optional_data")
    out = {f: getattr(mrz, f, None) for f in fields}
    out = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in out.items()}
    out["valid"] = mrz.valid
    return out


def _read(args) -> int:
    from cardreader.reader import read_document
    from cardreader.transport import PcscTransport, TransportError
    key = _key(args)
    try:
        transport = PcscTransport(args.reader, command_timeout=args.command_timeout)
    except TransportError as e:
        print(f"reader: {e}", file=sys.stderr)
        return 2
    try:
        if not transport.wait_for_card(args.wait):
            print(f"no card on {transport.reader} within {args.wait} s", file=sys.stderr)
            return 3
        trust = None
        if args.trust:
            from cardreader.pki import TrustStore
            trust = TrustStore(Path(args.trust))
        result = read_document(transport, key, trust_store=trust, deadline_s=args.deadline)
    finally:
        transport.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in result.files.items():
        (out / f"{name}.bin").write_bytes(data)
    summary = result.summary()
    summary["reader"] = transport.reader
    summary["out"] = str(out)
    if result.dg1 is not None:  # operator output only; never logged
        summary["dg1"] = _dg1_json(result.dg1)
    if result.passive_authentication is not None and hasattr(result.passive_authentication, "to_json"):
        summary["passive_authentication"] = result.passive_authentication.to_json()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        status = "OK" if result.ok else f"FAILED ({result.error})"
        print(f"{status}: {result.access_control or '-'}, {len(result.files)} files, "
              f"{result.apdus} APDUs, {result.seconds:.2f} s -> {out}")
    return 0 if result.ok else 1


# --------------------------------------------------------------------------- sim-card

def _sim_card(args) -> int:
    from cardreader.sim.chip import Faults, SimulatedChip
    from cardreader.sim.issuer import issue
    from cardreader.sim.persona import load_persona
    from cardreader.sim.vpcd import VirtualCard
    persona = load_persona(args.persona)
    document = issue(persona, pace=not args.no_pace)
    faults = Faults(no_extended=args.no_extended, max_read=args.max_read)
    card = VirtualCard(SimulatedChip(document, faults=faults), port=args.port)
    try:
        card.connect(timeout=args.connect_timeout)
    except ConnectionError as e:
        print(f"{e} (start pcscd first: pcscd -f -a)", file=sys.stderr)
        return 2
    print(f"simulated {persona.document_type} card for persona {args.persona!r} on vpcd port {args.port} "
          f"({'PACE+BAC' if not args.no_pace else 'BAC'}); Ctrl-C to remove it", file=sys.stderr)
    try:
        card.serve()
    except KeyboardInterrupt:
        pass
    finally:
        card.stop()
    return 0


# --------------------------------------------------------------------------- bench-read

# A contactless reader at ISO/IEC 14443 106 kbit/s with typical PC/SC + chip turnaround:
# ~9.4 bits on air per byte (start/parity/stop), plus a fixed cost per APDU (reader USB round
# trip, RF frame setup, chip command processing and SM crypto).
AIR_BITRATE = 106_000
BITS_PER_BYTE = 9.4
PER_APDU_S = 0.012


def _bench_read(args) -> int:
    from cardreader.apdu import BlockSize, PlainChannel, read_file, select_aid
    from cardreader.lds.dg1 import DG1
    from cardreader.lds.security_infos import parse_security_infos
    from cardreader.protocol import pace
    from cardreader.protocol.sm import max_short_payload
    from cardreader.sim.chip import Faults, SimulatedChip
    from cardreader.sim.issuer import issue
    from cardreader.sim.persona import load_persona
    from cardreader.sim.vpcd import PrivatePcscd, VirtualCard
    from cardreader.transport import PcscTransport

    why = PrivatePcscd.unavailable()
    if why:
        print(why, file=sys.stderr)
        return 2
    document = issue(load_persona(args.persona))
    size = args.size
    files = dict(document.files)
    files["DG2"] = b"\x75\x82" + (size - 4).to_bytes(2, "big") + os.urandom(size - 4)
    document = type("Doc", (), {"files": files, "persona": document.persona, "ca_private_key": None})()
    key = DG1.parse(files["DG1"]).mrz.bac_key()
    option = parse_security_infos(files["EF.CardAccess"]).pace[0]
    rows = []
    with tempfile.TemporaryDirectory() as d, PrivatePcscd(Path(d)) as daemon:
        transport = PcscTransport(daemon.reader)
        for label, extended in (("short", False), ("extended", True)):
            card = VirtualCard(SimulatedChip(document, faults=Faults(no_extended=not extended)),
                               port=daemon.port).start()
            try:
                if not transport.wait_for_card(5.0):
                    raise RuntimeError("the virtual card did not appear on the reader")
                times, counts, moved = [], [], []
                for _ in range(args.repeat):
                    transport.reset()
                    plain = PlainChannel(transport, extended=extended)
                    channel = pace.perform_pace(plain, key, option)
                    select_aid(channel)
                    before, bytes_before = plain.stats.apdus, plain.stats.bytes_in + plain.stats.bytes_out
                    start = time.perf_counter()
                    data = read_file(channel, fid=0x0102, sfi=0x02, block=BlockSize(extended=extended))
                    times.append(time.perf_counter() - start)
                    counts.append(plain.stats.apdus - before)
                    moved.append(plain.stats.bytes_in + plain.stats.bytes_out - bytes_before)
                    if data != files["DG2"]:
                        raise RuntimeError("DG2 read back differs")
            finally:
                card.stop()
                transport.wait_for_removal(5.0)
            apdus, wire = counts[-1], moved[-1]
            minimum = 1 if extended else math.ceil(size / max_short_payload(16))
            model = apdus * PER_APDU_S + wire * BITS_PER_BYTE / AIR_BITRATE
            rows.append((label, apdus, minimum, sorted(times)[len(times) // 2], wire, model))
        transport.close()
    print(f"DG2 of {size} bytes, {pace.describe(option)} secure messaging, pcscd + vpcd + pyscard, median of {args.repeat}")
    print(f"{'mode':<9} {'APDUs':>6} {'min':>5} {'vpcd wall s':>12} {'bytes':>7} {'contactless est. s':>19}")
    for label, apdus, minimum, wall, wire, model in rows:
        print(f"{label:<9} {apdus:>6} {minimum:>5} {wall:>12.4f} {wire:>7} {model:>19.3f}")
    for label, apdus, minimum, *_ in rows:
        print(f"{label}: {apdus} APDUs, {apdus - minimum} above the minimum of {minimum}")
    print(f"model: {PER_APDU_S * 1000:.0f} ms per APDU + {BITS_PER_BYTE} bits/byte at {AIR_BITRATE // 1000} kbit/s")
    return 0


# --------------------------------------------------------------------------- wiring

def register(subparsers) -> None:
    read = subparsers.add_parser("read", help="read a document on a PC/SC reader")
    read.add_argument("--reader", default="0", help="reader name (or part of it) or index (default 0)")
    key = read.add_mutually_exclusive_group(required=True)
    key.add_argument("--mrz", help="DOCNO,YYMMDD,YYMMDD: document number, date of birth, date of expiry")
    key.add_argument("--can", help="the 6-digit card access number")
    read.add_argument("--out", required=True, help="directory for the raw files (EF.COM.bin, DG1.bin, ...)")
    read.add_argument("--json", action="store_true", help="print the JSON summary")
    read.add_argument("--trust", help="trust store directory for passive authentication")
    read.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a card")
    read.add_argument("--deadline", type=float, default=20.0, help="overall read deadline in seconds")
    read.add_argument("--command-timeout", type=float, default=5.0, help="per-APDU timeout in seconds")
    read.set_defaults(func=_read)

    sim = subparsers.add_parser("sim-card", help="issue a persona and put it on pcscd's vpcd reader")
    sim.add_argument("--persona", default="demo", help="persona name or JSON path")
    sim.add_argument("--port", type=int, default=35963, help="vpcd port (35963 = 'Virtual PCD 00 00')")
    sim.add_argument("--no-pace", action="store_true", help="no EF.CardAccess: the chip offers BAC only")
    sim.add_argument("--no-extended", action="store_true", help="refuse extended-length APDUs")
    sim.add_argument("--max-read", type=int, help="largest READ BINARY the chip serves (e.g. 192)")
    sim.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for pcscd")
    sim.set_defaults(func=_sim_card)

    bench = subparsers.add_parser("bench-read", help="APDUs and time for a DG2 read, short vs extended length")
    bench.add_argument("--persona", default="demo")
    bench.add_argument("--size", type=int, default=20480, help="DG2 size in bytes")
    bench.add_argument("--repeat", type=int, default=5)
    bench.set_defaults(func=_bench_read)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cardreader", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (never personal data)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = sys.modules[__name__] if name == "cardreader.__main__" else importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # a helper's command module that has not landed yet
        module.register(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
