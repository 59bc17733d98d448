"""Passive authentication and the CSCA trust store (ICAO 9303-11 §5.1, 9303-12).

`signatures` is the one algorithm layer (RSA, RSASSA-PSS, ECDSA on named and
explicit curves); `trust` holds CSCAs, master lists and CRLs; `pa` checks an
EF.SOD against the data groups read and the trust store; `iso9796_2` is the
Active Authentication signature scheme; `countries` maps DG1's issuing state
to the C= of certificates; `cli` adds `trust`, `verify`, `aa` and `bench-pa`
to `python -m cardreader`.
"""
from cardreader.pki.pa import PAPolicy, PAResult, passive_authentication
from cardreader.pki.trust import TrustError, TrustStore

__all__ = ["PAPolicy", "PAResult", "TrustError", "TrustStore", "passive_authentication"]
