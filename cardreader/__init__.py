"""Read an ICAO 9303 eMRTD over a `Transport` and prove it genuine.

The public surface the gate uses lives here; everything else is the
standard's vocabulary: `lds/` (the files on the chip), `protocol/` (access
control, secure messaging, chip and active authentication), `pki/` (passive
authentication and the trust store), `sim/` (the simulated chip and its test
issuer).
"""
