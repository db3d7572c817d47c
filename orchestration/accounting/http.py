"""HTTP for the accounting sync: OAuth 2.0 tokens, retries and the errors the sync engine acts on.

What the network does decides what happens next (docs/accounting-sync.md):

- 401: the access token is refreshed once and the request repeated.
- 429: the request is repeated after the server's Retry-After (bounded: a wait longer than the
  policy allows is a transient failure, retried by a later run).
- 5xx, or no connection at all: repeated with exponential back-off, a bounded number of times.
- A timeout or a connection lost after the request left: the outcome is unknown
  (`UncertainOutcome`); the engine looks the object up before sending it again.
- Any other 4xx is returned to the caller, which decides whether it is a validation error.

Credentials are `Secret`s: their repr is masked, and neither they nor any request header are
ever logged or written to the sync ledger.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import simplejson

log = logging.getLogger(__name__)


class Secret:
    """A credential: printed, logged or formatted, it shows as ***."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


class ConfigError(ValueError):
    """A required setting is missing from the environment (the message names it, never its value)."""


class SyncError(Exception):
    """An object could not be synced. `http_status` is the last answer, if any."""

    def __init__(self, message: str, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


class PermanentSyncError(SyncError):
    """Sending the same thing again cannot succeed (a validation error, a missing mapping):
    someone must change the data, the mappings or the remote organisation."""


class CredentialsError(SyncError):
    """The token endpoint refused the credentials: nothing can be sent, the run stops."""


class TransientSyncError(SyncError):
    """The server was unavailable or rate-limited longer than a run waits: a later run retries."""


class UncertainOutcome(SyncError):
    """The request left but no answer came back (timeout, dropped connection, a gateway error, a
    conflict with a request in progress): it may or may not have been applied. The object must
    be looked up before it is sent again."""


class AlreadyExists(UncertainOutcome):
    """The server refused a create because the object exists (a unique number): sent before."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    """Requests per call, the first included, for 429, 5xx and refused connections."""
    base_delay: float = 0.5
    """First back-off after a 5xx, in seconds; doubled after each failure."""
    max_delay: float = 30.0
    max_retry_after: float = 120.0
    """The longest Retry-After a run waits for; a longer one fails the call for a later run."""
    timeout: float = 30.0
    """Seconds to wait for an answer before the outcome is declared uncertain."""


def dumps(payload: Any) -> str:
    """JSON with Decimal amounts written as exact numbers (never through float)."""
    return simplejson.dumps(payload, use_decimal=True, sort_keys=True, separators=(",", ":"))


def loads(text: str | bytes) -> Any:
    """JSON with every number that has a fraction read as a Decimal."""
    return simplejson.loads(text, use_decimal=True)


class OAuthToken:
    """An OAuth 2.0 access token from a token endpoint, fetched when first needed and again after
    a 401. `form` is the grant (client_credentials for a Xero custom connection, refresh_token
    for NetSuite); the client id and secret go in HTTP Basic authentication."""

    def __init__(self, token_url: str, client_id: str, client_secret: Secret, form: Mapping[str, Any],
                 *, http: httpx.Client):
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.form = dict(form)
        self.http = http
        self._access_token: Secret | None = None
        self.fetched = 0

    def access_token(self) -> Secret:
        if self._access_token is None:
            self.refresh()
        assert self._access_token is not None
        return self._access_token

    def refresh(self) -> None:
        form = {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in self.form.items()}
        try:
            response = self.http.post(self.token_url, data=form,
                                      auth=(self.client_id, self.client_secret.reveal()))
        except httpx.HTTPError as error:
            raise TransientSyncError(f"token endpoint {self.token_url} unreachable: {type(error).__name__}") from None
        if response.status_code != 200:
            # The body of a refused token request names the problem (invalid_client, ...), never a secret.
            raise CredentialsError(f"token endpoint {self.token_url} refused the credentials: "
                                   f"HTTP {response.status_code} {response.text[:200]}", response.status_code)
        body = response.json()
        self._access_token = Secret(body["access_token"])
        if body.get("refresh_token") and "refresh_token" in self.form:
            self.form["refresh_token"] = Secret(body["refresh_token"])  # rotated by the server
        self.fetched += 1
        log.info("fetched an access token from %s", self.token_url)


@dataclass
class ApiSession:
    """Requests to one API with one token, under a retry policy. `sleep` is injectable so tests
    can see the waits without spending them."""

    base_url: str
    token: OAuthToken
    http: httpx.Client
    headers: Mapping[str, str] = field(default_factory=dict)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    waits: list[float] = field(default_factory=list)
    """Every wait this session spent (Retry-After and back-off), in seconds."""

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None,
                idempotency_key: str | None = None, extra_headers: Mapping[str, str] | None = None) -> httpx.Response:
        url = self.base_url.rstrip("/") + path
        refreshed = False
        delay = self.policy.base_delay
        content = dumps(body).encode() if body is not None else None
        for attempt in range(1, self.policy.max_attempts + 1):
            headers = {"Accept": "application/json", **self.headers, **(extra_headers or {}),
                       "Authorization": f"Bearer {self.token.access_token().reveal()}"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            try:
                response = self.http.request(method, url, params=params, content=content, headers=headers,
                                             timeout=self.policy.timeout)
            except httpx.ConnectError as error:
                # Never connected: nothing was sent, so trying again is safe.
                log.warning("%s %s: cannot connect (%s), attempt %d", method, path, type(error).__name__, attempt)
                if attempt == self.policy.max_attempts:
                    raise TransientSyncError(f"{method} {path}: cannot connect to {self.base_url}") from None
                self._wait(delay)
                delay = min(delay * 2, self.policy.max_delay)
                continue
            except (httpx.TimeoutException, httpx.TransportError) as error:
                log.warning("%s %s: no answer (%s)", method, path, type(error).__name__)
                raise UncertainOutcome(f"{method} {path}: no answer ({type(error).__name__}); "
                                       "the request may have been applied") from None
            status = response.status_code
            log.info("%s %s -> %d", method, path, status)
            if status == 401 and not refreshed:
                refreshed = True
                self.token.refresh()
                continue
            if status == 401:
                raise CredentialsError(f"{method} {path}: unauthorised after a fresh token", status)
            if status == 409 and method != "GET":
                # Xero: the same idempotency key is still being processed.
                raise UncertainOutcome(f"{method} {path}: HTTP 409, a request with this key is in progress", status)
            if status == 429:
                wait = _retry_after(response, default=delay)
                if wait > self.policy.max_retry_after or attempt == self.policy.max_attempts:
                    raise TransientSyncError(
                        f"{method} {path}: rate limited ({response.headers.get('X-Rate-Limit-Problem', 'limit')}), "
                        f"retry after {wait:g} s", status)
                self._wait(wait)
                continue
            if status >= 500:
                if attempt == self.policy.max_attempts:
                    if method != "GET" and status != 503:
                        # A gateway error or a crash may come after the write was applied.
                        raise UncertainOutcome(f"{method} {path}: HTTP {status} after {attempt} attempts", status)
                    raise TransientSyncError(f"{method} {path}: HTTP {status} after {attempt} attempts", status)
                self._wait(delay)
                delay = min(delay * 2, self.policy.max_delay)
                continue
            return response
        raise TransientSyncError(f"{method} {path}: gave up after {self.policy.max_attempts} attempts")

    def _wait(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.sleep(seconds)


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After")
    try:
        return max(float(value), 0.0) if value is not None else default
    except ValueError:
        return default
