"""A fake NetSuite account on a local HTTP server, following the REST record API's documented
contract (NetSuite publishes no static OpenAPI document):

- `POST /services/rest/auth/oauth2/v1/token`: OAuth 2.0 refresh-token grant, HTTP Basic client
  credentials; access tokens expire (scripted) and answer 401.
- `PUT /services/rest/record/v1/<type>/eid:<external id>`: an upsert. 204 No Content, the
  record's URL in `Location`; the same external id always names the same record.
- `PATCH .../<type>/eid:<external id>`: updates fields; a sublist (`apply`) is merged by its
  `doc`.
- `GET .../<type>/eid:<external id>`: the record (with `id`, `externalId`, `total`), or 404.
- Errors answer the documented shape: `type`, `title`, `status`, `o:errorDetails` with
  `detail` and `o:errorCode`.

Business rules: a customer needs a company name and a subsidiary; a transaction needs a known
customer (`entity`), lines with known items and tax codes, an amount that agrees with quantity
and rate when both are given, and a unique `tranId` per record type; an applied credit cannot
exceed the credit memo's unapplied amount or the invoice's amount remaining.

Faults are scripted like the fake Xero's (tests/fakes/xero.py): rate_limit (429, NetSuite's
concurrency limit), unavailable (503), timeout_after_save, expired_token.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import simplejson
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.faults import Fault, take_fault

RECORD_PREFIX = "/services/rest/record/v1/"
TOKEN_PATH = "/services/rest/auth/oauth2/v1/token"
TYPES = ("customer", "invoice", "creditMemo")


class Refused(Exception):
    def __init__(self, status: int, detail: str, code: str = "USER_ERROR"):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


@dataclass
class FakeNetSuite:
    account_id: str = "TSTDRV1234567"
    client_id: str = "meterline-netsuite-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    refresh_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    items: set[str] = field(default_factory=lambda: {"101", "102", "190"})
    tax_codes: dict[str, Decimal] = field(default_factory=lambda: {"-7": Decimal(0), "11": Decimal("8.375"),
                                                                    "12": Decimal("20"), "13": Decimal("5.5"),
                                                                    "14": Decimal("14.975")})
    subsidiaries: set[str] = field(default_factory=lambda: {"1"})

    def __post_init__(self) -> None:
        self.records: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TYPES}
        """type -> external id -> record"""
        self.next_id = 1000
        self.tokens: set[str] = set()
        self.tokens_issued = 0
        self.faults: deque[Fault] = deque()
        self.calls: list[tuple[str, str, int]] = []
        self.seen_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def start(self) -> FakeNetSuite:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def env(self) -> dict[str, str]:
        return {"METERLINE_NETSUITE_ACCOUNT_ID": self.account_id, "METERLINE_NETSUITE_CLIENT_ID": self.client_id,
                "METERLINE_NETSUITE_CLIENT_SECRET": self.client_secret,
                "METERLINE_NETSUITE_REFRESH_TOKEN": self.refresh_token, "METERLINE_NETSUITE_URL": self.base_url}

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    # -- requests -----------------------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        with self._lock:
            response, delay = self._handle(request)
        if delay:
            time.sleep(delay)
        return response(environ, start_response)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(simplejson.dumps(body, use_decimal=True), status=status, headers=headers or {},
                        content_type="application/vnd.oracle.resource+json; type=singular")

    def _error(self, status: int, detail: str, code: str = "USER_ERROR", headers=None) -> Response:
        return self._json(status, {"type": "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
                                   "title": {400: "Bad Request", 401: "Unauthorized", 404: "Record not found",
                                             429: "Too Many Requests", 503: "Service Unavailable"}.get(status, "Error"),
                                   "status": status, "o:errorDetails": [{"detail": detail, "o:errorCode": code}]},
                          headers)

    def _handle(self, request: Request) -> tuple[Response, float]:
        if request.path == TOKEN_PATH:
            return self._token(request), 0.0
        if not request.path.startswith(RECORD_PREFIX):
            return self._error(404, "Unknown path", "NONEXISTENT_ID"), 0.0
        self.seen_headers.append(dict(request.headers))
        path = request.path[len(RECORD_PREFIX) - 1:]
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer ") or authorization[7:] not in self.tokens:
            return self._record(request, path, self._error(401, "Invalid login attempt.", "INVALID_LOGIN")), 0.0
        delay = 0.0
        fault = take_fault(self.faults, request.method, path)
        if fault:
            if fault.kind == "rate_limit":
                return self._record(request, path, self._error(
                    429, "Request limit exceeded.", "CONCURRENCY_LIMIT_EXCEEDED",
                    {"Retry-After": str(fault.retry_after)})), 0.0
            if fault.kind == "unavailable":
                return self._record(request, path, self._error(503, "Service unavailable.", "UNEXPECTED_ERROR")), 0.0
            if fault.kind == "expired_token":
                self.tokens.clear()
                return self._record(request, path, self._error(401, "Invalid login attempt.", "INVALID_LOGIN")), 0.0
            if fault.kind == "timeout_after_save":
                delay = fault.delay
        record_type, _, reference = path.strip("/").partition("/")
        if record_type not in TYPES or not reference.startswith("eid:"):
            return self._record(request, path, self._error(404, f"Unknown record {path}", "NONEXISTENT_ID")), 0.0
        external_id = reference[4:]
        try:
            if request.method == "GET":
                record = self.records[record_type].get(external_id)
                if record is None:
                    raise Refused(404, f"Record {record_type} with external ID {external_id} does not exist.",
                                  "NONEXISTENT_ID")
                return self._record(request, path, self._json(200, record)), delay
            body = simplejson.loads(request.get_data() or b"{}", use_decimal=True)
            if request.method == "PUT":
                record = self._upsert(record_type, external_id, body)
            elif request.method == "PATCH":
                record = self._patch(record_type, external_id, body)
            else:
                raise Refused(405, f"{request.method} is not allowed here.", "INVALID_REQUEST")
        except Refused as refused:
            return self._record(request, path, self._error(refused.status, refused.detail, refused.code)), 0.0
        location = f"{self.base_url}{RECORD_PREFIX}{record_type}/{record['id']}"
        return self._record(request, path, Response(status=204, headers={"Location": location})), delay

    def _record(self, request: Request, path: str, response: Response) -> Response:
        self.calls.append((request.method, path, response.status_code))
        return response

    def _token(self, request: Request) -> Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return self._json(401, {"error": "invalid_client"})
        if request.form.get("grant_type") != "refresh_token" or request.form.get("refresh_token") != self.refresh_token:
            return self._json(400, {"error": "invalid_grant"})
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        self.tokens_issued += 1
        return self._json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    # -- business rules -----------------------------------------------------------------------

    def _upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if "externalId" in body:
            raise Refused(400, "Do not set externalId in the body of an upsert.", "INVALID_REQUEST")
        checked = self._customer(body) if record_type == "customer" else self._transaction(record_type, external_id, body)
        existing = self.records[record_type].get(external_id)
        record = {**checked, "externalId": external_id,
                  "id": existing["id"] if existing else str(self._new_id())}
        if existing and record_type == "creditMemo":
            record["apply"] = existing.get("apply", {"items": []})
            record["unapplied"] = record["total"] - sum(a["amount"] for a in record["apply"]["items"])
        self.records[record_type][external_id] = record
        return record

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _customer(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("companyName"):
            raise Refused(400, "Please enter value(s) for: Company Name")
        if str((body.get("subsidiary") or {}).get("id")) not in self.subsidiaries:
            raise Refused(400, "Invalid subsidiary reference key.", "INVALID_KEY_OR_REF")
        return dict(body)

    def _transaction(self, record_type: str, external_id: str, body: dict[str, Any]) -> dict[str, Any]:
        entity = str((body.get("entity") or {}).get("id"))
        if not any(c["id"] == entity for c in self.records["customer"].values()):
            raise Refused(400, f"Invalid entity reference key {entity}.", "INVALID_KEY_OR_REF")
        tran_id = body.get("tranId")
        if tran_id and any(r.get("tranId") == tran_id and key != external_id
                           for key, r in self.records[record_type].items()):
            raise Refused(400, f"A transaction with number {tran_id} already exists.", "DUP_RCRD")
        lines = (body.get("item") or {}).get("items") or []
        if not lines:
            raise Refused(400, "You must enter at least one line item for this transaction.")
        subtotal = tax = Decimal(0)
        for number, line in enumerate(lines, start=1):
            if str((line.get("item") or {}).get("id")) not in self.items:
                raise Refused(400, f"Line {number}: invalid item reference key.", "INVALID_KEY_OR_REF")
            if str((line.get("taxCode") or {}).get("id")) not in self.tax_codes:
                raise Refused(400, f"Line {number}: invalid taxCode reference key.", "INVALID_KEY_OR_REF")
            amount = _money(line.get("amount"))
            if line.get("rate") is not None and line.get("quantity") is not None:
                expected = (_money(line["quantity"]) * _money(line["rate"])).quantize(Decimal("0.01"), ROUND_HALF_UP)
                if expected != amount:
                    raise Refused(400, f"Line {number}: amount {amount} is not quantity x rate {expected}.")
            if amount != amount.quantize(Decimal("0.01")) or _money(line.get("tax1Amt")) != _money(
                    line.get("tax1Amt")).quantize(Decimal("0.01")):
                raise Refused(400, f"Line {number}: amounts have at most 2 decimal places.")
            subtotal += amount
            tax += _money(line.get("tax1Amt"))
        record = dict(body)
        record.update({"subtotal": subtotal, "taxTotal": tax, "total": subtotal + tax})
        if record_type == "invoice":
            record["amountRemaining"] = subtotal + tax
        else:
            if subtotal + tax <= 0:
                raise Refused(400, "A credit memo total must be positive.")
            record["apply"] = {"items": []}
            record["unapplied"] = subtotal + tax
        return record

    def _patch(self, record_type: str, external_id: str, body: dict[str, Any]) -> dict[str, Any]:
        record = self.records[record_type].get(external_id)
        if record is None:
            raise Refused(404, f"Record {record_type} with external ID {external_id} does not exist.",
                          "NONEXISTENT_ID")
        for applied in (body.get("apply") or {}).get("items") or []:
            invoice = next((i for i in self.records["invoice"].values()
                            if i["id"] == str((applied.get("doc") or {}).get("id"))), None)
            if invoice is None:
                raise Refused(400, "Invalid apply doc reference key.", "INVALID_KEY_OR_REF")
            if invoice["entity"] != record["entity"] or invoice["currency"] != record["currency"]:
                raise Refused(400, "The credit memo and the invoice belong to different customers or currencies.")
            amount = _money(applied.get("amount"))
            existing = next((a for a in record["apply"]["items"] if a["doc"]["id"] == invoice["id"]), None)
            change = amount - (existing["amount"] if existing else Decimal(0))
            if change > record["unapplied"] or change > invoice["amountRemaining"]:
                raise Refused(400, "The amount applied exceeds the credit left or the amount due.")
            if existing:
                existing["amount"] = amount
            else:
                record["apply"]["items"].append({"doc": {"id": invoice["id"]}, "apply": True, "amount": amount})
            record["unapplied"] -= change
            invoice["amountRemaining"] -= change
        return record

    # -- for assertions -----------------------------------------------------------------------

    def by_tran_id(self, record_type: str, tran_id: str) -> dict[str, Any]:
        [record] = [r for r in self.records[record_type].values() if r.get("tranId") == tran_id]
        return record
