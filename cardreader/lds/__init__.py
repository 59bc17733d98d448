"""The Logical Data Structure: the files an ICAO 9303 chip holds.

Every parser here takes bytes that came off a card (or a test) and either
returns a typed object or raises a subclass of `LDSError` with a reason code;
no other exception escapes a parser, whatever the input.
"""
from __future__ import annotations


# What asn1crypto raises on hostile encodings, which it often meets only when it parses lazily
# (an empty BIT STRING is an IndexError, an unknown key OID a KeyError, a REAL where a value was
# expected an AttributeError). Every parser that hands bytes from a card to asn1crypto turns these
# into its typed error.
ASN1_DECODE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError)


class LDSError(Exception):
    """A file on the chip is malformed or unsupported.

    `reason` is a short machine-readable code (e.g. 'truncated',
    'bad_check_digit'); the message is for people and never contains
    personal data.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason
