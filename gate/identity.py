"""The identity seam: is this person / this document known to the authority?

The gate asks one question per traveller (`IdentityService.check`) and gets a
typed answer. Network trouble, a refusing server or a garbled reply never
escape as exceptions: they come back as outcome ``unavailable`` with a reason,
and the decision refers the traveller to an officer. Queries carry personal
data, so their reprs never show it.
"""
from __future__ import annotations

import logging
import random
import ssl
import time
import unicodedata
from datetime import date
from pathlib import Path
from typing import Callable, Literal, Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

Outcome = Literal["clear", "revoked", "lost_stolen", "exit_ban", "watch_list", "not_found", "unavailable"]


class _Personal(BaseModel):
    """Personal data: equality and serialisation work, printing shows nothing."""
    model_config = ConfigDict(frozen=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<personal data hidden>)"

    __str__ = __repr__


class PersonQuery(_Personal):
    surname: str
    given_names: str = ""
    date_of_birth: date | None = None
    nationality: str | None = None


class DocumentQuery(_Personal):
    document_number: str
    issuing_state: str
    document_type: str = ""
    date_of_expiry: date | None = None


class IdentityAnswer(BaseModel):
    outcome: Outcome
    reasons: list[str] = Field(default_factory=list)


@runtime_checkable
class IdentityService(Protocol):
    def check(self, person: PersonQuery, document: DocumentQuery) -> IdentityAnswer: ...


_FOLD = str.maketrans({"Đ": "D", "đ": "d", "Ø": "O", "ø": "o", "Ł": "L", "ł": "l", "ß": "SS"})


def normalise_name(name: str) -> str:
    """Compare names as an MRZ would print them: upper case, no diacritics,
    fillers ('<'), hyphens and punctuation read as single spaces."""
    folded = unicodedata.normalize("NFKD", name.translate(_FOLD))
    letters = "".join(c if c.isalnum() else " " for c in folded if not unicodedata.combining(c))
    return " ".join(letters.upper().split())


def normalise_document_number(number: str) -> str:
    """Document numbers compare without fillers, spaces or dashes, in upper case."""
    return "".join(c for c in number.upper() if c.isalnum())


class HttpIdentityService:
    """Client for the identity service's ``POST /v1/check``.

    Each attempt has its own timeout. Connection failures, timeouts and 5xx
    are retried ``retries`` times with exponential backoff and full jitter;
    a 4xx is the server refusing *this* request, so it is never retried.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 2.0, retries: int = 2,
                 client_cert: Path | None = None, client_key: Path | None = None,
                 ca_bundle: Path | None = None, backoff_base_s: float = 0.1, backoff_max_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random,
                 transport: httpx.BaseTransport | None = None):
        self.retries = retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._rng = rng
        verify: ssl.SSLContext | bool = True
        if ca_bundle or client_cert:
            verify = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
            if client_cert:
                verify.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
        self._client = httpx.Client(base_url=base_url, timeout=timeout_s, verify=verify, transport=transport)

    @classmethod
    def from_settings(cls, s) -> "HttpIdentityService":
        return cls(s.url, timeout_s=s.timeout_s, retries=s.retries, client_cert=s.client_cert,
                   client_key=s.client_key, ca_bundle=s.ca_bundle)

    def close(self) -> None:
        self._client.close()

    def _backoff(self, attempt: int) -> float:
        return self._rng() * min(self.backoff_max_s, self.backoff_base_s * 2 ** attempt)

    def check(self, person: PersonQuery, document: DocumentQuery) -> IdentityAnswer:
        body = {"person": person.model_dump(mode="json"), "document": document.model_dump(mode="json")}
        last = "unavailable"
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self._backoff(attempt - 1))
            try:
                response = self._client.post("/v1/check", json=body)
            except httpx.TimeoutException:
                last = "timeout"
                continue
            except httpx.TransportError as e:
                last = "connect_error" if isinstance(e, httpx.ConnectError) else "transport_error"
                continue
            if response.status_code >= 500:
                last = f"server_error_{response.status_code}"
                continue
            if response.status_code != 200:
                log.warning("identity service refused the request: HTTP %d", response.status_code)
                return IdentityAnswer(outcome="unavailable", reasons=[f"rejected_{response.status_code}"])
            try:
                return IdentityAnswer.model_validate_json(response.content)
            except ValidationError:
                return IdentityAnswer(outcome="unavailable", reasons=["malformed_response"])
        log.warning("identity service unavailable after %d attempts: %s", self.retries + 1, last)
        return IdentityAnswer(outcome="unavailable", reasons=[last, f"attempts_{self.retries + 1}"])


def connect(settings) -> IdentityService:
    """The gate's identity service from settings: the HTTP client when a URL
    is configured, else the reference service's logic in-process (demo)."""
    if settings.identity.url:
        return HttpIdentityService.from_settings(settings.identity)
    from gate.identity_service import IdentityRegistry
    return IdentityRegistry.open_local(settings)
