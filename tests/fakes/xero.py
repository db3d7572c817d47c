"""A fake Xero organisation on a local HTTP server, for the accounting-sync tests.

It keeps state (contacts, items, invoices, credit notes and their allocations, payments) and:

- validates every request and every response against Xero's OpenAPI contract
  (tests/contracts/xero/xero_accounting.yaml) with openapi-core; a violation answers 400 and is
  recorded in `violations`, which the tests require to stay empty;
- enforces Xero's business rules the contract cannot express: an ACCREC invoice needs a known
  contact and line items; invoice and credit-note numbers are unique; item, account and tax
  codes must exist; line amounts must agree with quantity, unit amount and discount; an
  allocation cannot exceed the credit left or the amount due; a document with allocations
  cannot be voided;
- honours Xero's protocol: OAuth 2.0 client-credentials tokens, the `xero-tenant-id` header,
  `Idempotency-Key` (at most 128 characters; a repeated key answers the first response without
  doing anything again), `summarizeErrors=false` (200 with per-element `ValidationErrors`);
- plays scripted faults, in order, on the requests they match: 429 with Retry-After, 503, a
  timeout after the request was applied, an expired token, a refused batch element.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import simplejson
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from tests.fakes.faults import Fault, take_fault

CONTRACT = Path(__file__).resolve().parent.parent / "contracts" / "xero" / "xero_accounting.yaml"
CONTRACT_SHA256 = "140f64f8e6bd2d8524b8ffdbffd08589d417efa5466ba57bfa04939a69ff6db8"
API_PREFIX = "/api.xro/2.0"


def load_contract() -> OpenAPI:
    """The contract with the two in-memory patches its README describes (slow: load it once)."""
    spec = yaml.load(CONTRACT.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))

    def patch_boolean_defaults(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "boolean" and isinstance(node.get("default"), str):
                node["default"] = node["default"].lower() == "true"
            for value in node.values():
                patch_boolean_defaults(value)
        elif isinstance(node, list):
            for value in node:
                patch_boolean_defaults(value)

    patch_boolean_defaults(spec)
    spec["servers"].append({"url": API_PREFIX})
    return OpenAPI.from_dict(spec)


def _xero_date(value: str | None) -> str | None:
    """Xero answers dates as /Date(milliseconds+0000)/."""
    if not value:
        return None
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(value[:10]).replace(tzinfo=timezone.utc)
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def _round(value: Decimal, places: int = 2) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


class ValidationFailure(Exception):
    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


@dataclass
class FakeXero:
    openapi: OpenAPI
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    client_id: str = "meterline-test-client"
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    currencies: tuple[str, ...] = ("USD", "EUR", "JPY", "GBP")
    accounts: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "200": {"Code": "200", "Name": "Sales", "Type": "REVENUE"},
        "210": {"Code": "210", "Name": "Usage revenue", "Type": "REVENUE"},
        "820": {"Code": "820", "Name": "Customer prepayments", "Type": "CURRLIAB"},
        "090": {"Code": "090", "Name": "Business bank account", "Type": "BANK"},
    })
    tax_rates: dict[str, Decimal] = field(default_factory=lambda: {
        "OUTPUT": Decimal("7.25"), "NONE": Decimal(0), "EXEMPTOUTPUT": Decimal(0), "TAX001": Decimal("20"),
        "TAX002": Decimal("19"), "TAX003": Decimal("10"), "TAX004": Decimal("8.875"),
    })

    def __post_init__(self) -> None:
        self.contacts: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.credit_notes: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.idempotent: dict[str, tuple[int, bytes]] = {}
        self.tokens: set[str] = set()
        self.faults: deque[Fault] = deque()
        self.calls: list[tuple[str, str, int]] = []
        """(method, path, status) of every API request, in order."""
        self.violations: list[str] = []
        self.tokens_issued = 0
        self.seen_headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # -- server -------------------------------------------------------------------------------

    def start(self) -> FakeXero:
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def token_url(self) -> str:
        return self.base_url + "/connect/token"

    def env(self) -> dict[str, str]:
        return {"METERLINE_XERO_CLIENT_ID": self.client_id, "METERLINE_XERO_CLIENT_SECRET": self.client_secret,
                "METERLINE_XERO_TENANT_ID": self.tenant_id, "METERLINE_XERO_API_URL": self.api_url,
                "METERLINE_XERO_TOKEN_URL": self.token_url}

    def script(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # -- request handling ---------------------------------------------------------------------

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        delay = 0.0
        with self._lock:
            response, delay = self._handle(request)
        if delay:
            time.sleep(delay)  # applied, but the client gives up before the answer comes
        return response(environ, start_response)

    def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        return Response(simplejson.dumps(body, use_decimal=True), status=status, headers=headers or {},
                        content_type="application/json; charset=utf-8")

    def _handle(self, request: Request) -> tuple[Response, float]:
        if request.path == "/connect/token":
            return self._token(request), 0.0
        if not request.path.startswith(API_PREFIX):
            return self._json(404, {"Title": "Not found"}), 0.0
        self.seen_headers.append(dict(request.headers))
        path = request.path[len(API_PREFIX):]
        errors = [str(e) for e in self.openapi.iter_request_errors(WerkzeugOpenAPIRequest(request))]
        if errors:
            self.violations.append(f"{request.method} {path}: request: {'; '.join(errors)}")
            return self._record(request, self._json(400, {"Type": "ContractViolation", "Detail": errors[0]})), 0.0
        authorization = request.headers.get("Authorization", "")
        if not authorization.startswith("Bearer ") or authorization[7:] not in self.tokens:
            return self._record(request, self._json(401, {"Title": "Unauthorized", "Status": 401,
                                                          "Detail": "TokenExpired: token expired"})), 0.0
        if request.headers.get("xero-tenant-id") != self.tenant_id:
            return self._record(request, self._json(403, {"Title": "Forbidden", "Status": 403,
                                                          "Detail": "AuthenticationUnsuccessful"})), 0.0
        key = request.headers.get("Idempotency-Key")
        if key and len(key) > 128:
            return self._record(request, self._json(400, {"ErrorNumber": 10, "Type": "ValidationException",
                                                          "Message": "Idempotency-Key longer than 128"})), 0.0
        fault = take_fault(self.faults, request.method, path)
        reject = None
        delay = 0.0
        if fault:
            if fault.kind == "rate_limit":
                return self._record(request, self._json(429, {"Title": "Too Many Requests"}, {
                    "Retry-After": str(fault.retry_after), "X-Rate-Limit-Problem": "minute"})), 0.0
            if fault.kind == "unavailable":
                return self._record(request, self._json(503, {"Title": "Service Unavailable"})), 0.0
            if fault.kind == "expired_token":
                self.tokens.clear()
                return self._record(request, self._json(401, {"Title": "Unauthorized", "Status": 401,
                                                              "Detail": "TokenExpired: token expired"})), 0.0
            if fault.kind == "timeout_after_save":
                delay = fault.delay
            if fault.kind == "reject_element":
                reject = fault
        replay_key = (key, request.method, path) if key and request.method in ("PUT", "POST") else None
        if replay_key and str(replay_key) in self.idempotent:
            status, body = self.idempotent[str(replay_key)]
            response = Response(body, status=status, content_type="application/json; charset=utf-8")
            return self._record(request, response), delay
        try:
            status, body = self._route(request, path, reject)
        except KeyError as missing:
            status, body = 404, {"Title": "Not Found", "Detail": f"{missing} not found"}
        response = self._json(status, body)
        if status in (200, 400):
            response_errors = [str(e) for e in self.openapi.iter_response_errors(
                WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response))]
            if response_errors:
                self.violations.append(f"{request.method} {path}: response: {'; '.join(response_errors)}")
        if replay_key:
            self.idempotent[str(replay_key)] = (status, response.get_data())
        return self._record(request, response), delay

    def _record(self, request: Request, response: Response) -> Response:
        self.calls.append((request.method, request.path[len(API_PREFIX):], response.status_code))
        return response

    def _token(self, request: Request) -> Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return self._json(400, {"error": "invalid_client"})
        if request.form.get("grant_type") != "client_credentials":
            return self._json(400, {"error": "unsupported_grant_type"})
        token = secrets.token_urlsafe(32)
        self.tokens.add(token)
        self.tokens_issued += 1
        return self._json(200, {"access_token": token, "expires_in": 1800, "token_type": "Bearer",
                                "scope": request.form.get("scope", "")})

    # -- routes -------------------------------------------------------------------------------

    def _route(self, request: Request, path: str, reject: Fault | None) -> tuple[int, Any]:
        method = request.method
        body = simplejson.loads(request.get_data() or b"{}", use_decimal=True) if method in ("PUT", "POST") else {}
        summarize = request.args.get("summarizeErrors", "true").lower() != "false"
        parts = [p for p in path.split("/") if p]
        collection = parts[0] if parts else ""
        if method == "GET":
            return 200, self._get(collection, parts[1:], request.args)
        if len(parts) == 1 and collection in ("Contacts", "Items", "Invoices", "CreditNotes", "Payments"):
            create = {"Contacts": self._save_contact, "Items": self._save_item, "Invoices": self._create_invoice,
                      "CreditNotes": self._create_credit_note, "Payments": self._create_payment}[collection]
            return self._batch(collection, body.get(collection) or [], create, summarize, reject, update=method == "POST")
        if collection in ("Invoices", "CreditNotes") and len(parts) == 2 and method == "POST":
            return self._batch(collection, body.get(collection) or [],
                               lambda element, update: self._update_status(collection, parts[1], element),
                               summarize, reject, update=True)
        if collection == "CreditNotes" and len(parts) == 3 and parts[2] == "Allocations" and method == "PUT":
            return self._batch("Allocations", body.get("Allocations") or [],
                               lambda element, update: self._allocate(parts[1], element), summarize, reject)
        return 404, {"Title": "Not Found"}

    def _batch(self, collection: str, elements: list[dict], save, summarize: bool, reject: Fault | None,
               update: bool = False) -> tuple[int, Any]:
        """Validate every element; with summarizeErrors=false save the valid ones and flag the
        others, else save all or none (Xero's behaviour)."""
        results = []
        checked = []
        for element in elements:
            number = element.get("InvoiceNumber") or element.get("CreditNoteNumber") or element.get("Code") \
                or element.get("ContactNumber")
            try:
                if reject and reject.match == number:
                    raise ValidationFailure([reject.message])
                checked.append((element, None))
            except ValidationFailure as failure:
                checked.append((element, failure))
        if summarize:
            # All or nothing: dry-validate by saving into a copy of the state.
            snapshot = self._snapshot()
            failures, saved = [], []
            for element, failure in checked:
                if failure is None:
                    try:
                        saved.append(save(element, update))
                    except ValidationFailure as error:
                        failure = error
                failures.append(failure)
            if any(failures):
                self._restore(snapshot)
                return 400, {"ErrorNumber": 10, "Type": "ValidationException",
                             "Message": "A validation exception occurred",
                             "Elements": [{**_element_id(e), "ValidationErrors": [{"Message": m} for m in f.messages]}
                                          if f else _element_id(e) for (e, _), f in zip(checked, failures)]}
            return 200, {collection: [self._public(collection, record) for record in saved]}
        for element, failure in checked:
            if failure is None:
                try:
                    saved = save(element, update)
                    results.append({**self._public(collection, saved), "HasErrors": False}
                                   if collection in ("Invoices", "CreditNotes") else self._public(collection, saved))
                    continue
                except ValidationFailure as error:
                    failure = error
            flagged = {**_echo(collection, element), "ValidationErrors": [{"Message": m} for m in failure.messages]}
            if collection in ("Invoices", "CreditNotes"):
                flagged["HasErrors"] = True
            elif collection == "Contacts":
                flagged["HasValidationErrors"] = True
            results.append(flagged)
        return 200, {collection: results}

    def _snapshot(self):
        import copy

        return copy.deepcopy((self.contacts, self.items, self.invoices, self.credit_notes, self.payments))

    def _restore(self, snapshot) -> None:
        self.contacts, self.items, self.invoices, self.credit_notes, self.payments = snapshot

    # -- business rules -----------------------------------------------------------------------

    def _save_contact(self, element: dict, update: bool) -> dict:
        name = (element.get("Name") or "").strip()
        if not name:
            raise ValidationFailure(["The contact name must be specified."])
        existing = self.contacts.get(element.get("ContactID") or "")
        if element.get("ContactID") and not existing:
            raise ValidationFailure([f"Contact {element['ContactID']} does not exist."])
        for other in self.contacts.values():
            if other["Name"] == name and other is not existing:
                raise ValidationFailure([f"The contact name {name} is already assigned to another contact. "
                                         "The contact name must be unique across all active contacts."])
        if element.get("DefaultCurrency") and element["DefaultCurrency"] not in self.currencies:
            raise ValidationFailure([f"Currency {element['DefaultCurrency']} is not enabled."])
        record = existing or {"ContactID": str(uuid.uuid4()), "ContactStatus": "ACTIVE"}
        record.update({k: v for k, v in element.items() if k != "ContactID"})
        record["Name"] = name
        self.contacts[record["ContactID"]] = record
        return record

    def _save_item(self, element: dict, update: bool) -> dict:
        code = element.get("Code") or ""
        if not code or len(code) > 30:
            raise ValidationFailure(["Item code must be 1 to 30 characters."])
        existing = self.items.get(element.get("ItemID") or "") or next(
            (i for i in self.items.values() if i["Code"] == code), None)
        if existing and not update:
            raise ValidationFailure([f"Item code '{code}' already exists."])
        sales = element.get("SalesDetails") or {}
        if sales.get("AccountCode") and sales["AccountCode"] not in self.accounts:
            raise ValidationFailure([f"Account code '{sales['AccountCode']}' is not a valid code for this document."])
        if sales.get("TaxType") and sales["TaxType"] not in self.tax_rates:
            raise ValidationFailure([f"The TaxType code '{sales['TaxType']}' does not exist or cannot be used."])
        record = existing or {"ItemID": str(uuid.uuid4())}
        record.update({k: v for k, v in element.items() if k != "ItemID"})
        self.items[record["ItemID"]] = record
        return record

    def _check_contact(self, element: dict) -> dict:
        contact = element.get("Contact") or {}
        found = self.contacts.get(contact.get("ContactID") or "")
        if found is None:
            raise ValidationFailure(["A Contact must be specified for this type of transaction."
                                     if not contact else f"Contact {contact.get('ContactID')} does not exist."])
        return found

    def _line_items(self, element: dict) -> tuple[list[dict], Decimal, Decimal]:
        lines = element.get("LineItems") or []
        if not lines:
            raise ValidationFailure(["At least one line item must be specified."])
        messages = []
        subtotal = tax_total = Decimal(0)
        stored = []
        for number, line in enumerate(lines, start=1):
            if not line.get("Description"):
                messages.append(f"Line {number}: Description is required.")
            item = None
            if line.get("ItemCode"):
                item = next((i for i in self.items.values() if i["Code"] == line["ItemCode"]), None)
                if item is None:
                    messages.append(f"Item code '{line['ItemCode']}' is not valid.")
            account = line.get("AccountCode") or ((item or {}).get("SalesDetails") or {}).get("AccountCode")
            if not account or account not in self.accounts:
                messages.append(f"Account code '{account}' is not a valid code for this document.")
            tax_type = line.get("TaxType") or ((item or {}).get("SalesDetails") or {}).get("TaxType")
            if not tax_type or tax_type not in self.tax_rates:
                messages.append(f"The TaxType code '{tax_type}' does not exist or cannot be used for this type of "
                                "transaction.")
            quantity = _money(line.get("Quantity", 1))
            discount = _money(line.get("DiscountAmount"))
            for name in ("Quantity", "UnitAmount"):
                if line.get(name) is not None and _money(line[name]) != _round(_money(line[name]), 4):
                    messages.append(f"Line {number}: {name} has more than 4 decimal places.")
            for name in ("LineAmount", "TaxAmount", "DiscountAmount"):
                if line.get(name) is not None and _money(line[name]) != _round(_money(line[name])):
                    messages.append(f"Line {number}: {name} has more than 2 decimal places.")
            if line.get("UnitAmount") is not None:
                unit = _money(line["UnitAmount"])
                expected = _round(quantity * unit) - discount
                if line.get("LineAmount") is not None and _money(line["LineAmount"]) != expected:
                    messages.append(f"Line {number}: the line total {line['LineAmount']} does not match the expected "
                                    f"line total {expected}.")
                amount = expected
            elif line.get("LineAmount") is not None:
                amount = _money(line["LineAmount"])
                unit = _round((amount + discount) / quantity, 4) if quantity else Decimal(0)
            else:
                messages.append(f"Line {number}: a UnitAmount or a LineAmount is required.")
                continue
            rate = self.tax_rates.get(tax_type or "", Decimal(0))
            tax = _money(line["TaxAmount"]) if line.get("TaxAmount") is not None else _round(amount * rate / 100)
            subtotal += amount
            tax_total += tax
            stored.append({**line, "LineItemID": str(uuid.uuid4()), "Quantity": quantity, "UnitAmount": unit,
                           "LineAmount": amount, "TaxAmount": tax, "AccountCode": account, "TaxType": tax_type})
        if messages:
            raise ValidationFailure(messages)
        return stored, subtotal, tax_total

    def _check_document(self, element: dict, number_field: str, store: dict, expected_type: str) -> None:
        messages = []
        if element.get("Type") != expected_type:
            messages.append(f"Type must be {expected_type} for this fake organisation.")
        number = element.get(number_field)
        if number and any(d.get(number_field) == number and d["Status"] != "DELETED" for d in store.values()):
            label = "Invoice #" if number_field == "InvoiceNumber" else "Credit Note Number"
            messages.append(f"{label} must be unique.")
        if not element.get("Date"):
            messages.append("Date is required.")
        if element.get("CurrencyCode") and element["CurrencyCode"] not in self.currencies:
            messages.append(f"Currency {element['CurrencyCode']} is not enabled for this organisation.")
        if element.get("Status", "DRAFT") not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            messages.append(f"Status {element.get('Status')} cannot be used when creating a document.")
        if element.get("LineAmountTypes", "Exclusive") not in ("Exclusive", "NoTax"):
            messages.append("This fake organisation takes LineAmountTypes Exclusive or NoTax.")
        if messages:
            raise ValidationFailure(messages)

    def _create_invoice(self, element: dict, update: bool) -> dict:
        self._check_document(element, "InvoiceNumber", self.invoices, "ACCREC")
        contact = self._check_contact(element)
        if element.get("Status") == "AUTHORISED" and not element.get("DueDate"):
            raise ValidationFailure(["Due Date is required."])
        lines, subtotal, tax = self._line_items(element)
        total = subtotal + tax
        if total < 0:
            raise ValidationFailure(["Invoice total cannot be negative."])
        record = {**element, "InvoiceID": str(uuid.uuid4()), "Contact": {"ContactID": contact["ContactID"],
                  "Name": contact["Name"]}, "LineItems": lines, "SubTotal": subtotal, "TotalTax": tax,
                  "Total": total, "AmountDue": total, "AmountPaid": Decimal(0), "AmountCredited": Decimal(0),
                  "Status": element.get("Status", "DRAFT"), "CurrencyCode": element.get("CurrencyCode", "USD"),
                  "Allocations": [], "Payments": []}
        self.invoices[record["InvoiceID"]] = record
        return record

    def _create_credit_note(self, element: dict, update: bool) -> dict:
        self._check_document(element, "CreditNoteNumber", self.credit_notes, "ACCRECCREDIT")
        contact = self._check_contact(element)
        lines, subtotal, tax = self._line_items(element)
        total = subtotal + tax
        if total <= 0:
            raise ValidationFailure(["Credit note total must be positive."])
        record = {**element, "CreditNoteID": str(uuid.uuid4()), "Contact": {"ContactID": contact["ContactID"],
                  "Name": contact["Name"]}, "LineItems": lines, "SubTotal": subtotal, "TotalTax": tax,
                  "Total": total, "RemainingCredit": total, "Status": element.get("Status", "DRAFT"),
                  "CurrencyCode": element.get("CurrencyCode", "USD"), "Allocations": []}
        self.credit_notes[record["CreditNoteID"]] = record
        return record

    def _allocate(self, credit_note_id: str, element: dict) -> dict:
        note = self.credit_notes.get(credit_note_id)
        if note is None:
            raise ValidationFailure([f"Credit note {credit_note_id} does not exist."])
        invoice = self.invoices.get(((element.get("Invoice") or {}).get("InvoiceID")) or "")
        if invoice is None:
            raise ValidationFailure(["The invoice to allocate to does not exist."])
        amount = _money(element.get("Amount"))
        messages = []
        if note["Status"] != "AUTHORISED" or invoice["Status"] != "AUTHORISED":
            messages.append("Allocations need an authorised credit note and an authorised invoice.")
        if note["Contact"]["ContactID"] != invoice["Contact"]["ContactID"]:
            messages.append("The credit note and the invoice belong to different contacts.")
        if note["CurrencyCode"] != invoice["CurrencyCode"]:
            messages.append("The credit note and the invoice are in different currencies.")
        if amount <= 0:
            messages.append("The amount must be greater than zero.")
        if amount > note["RemainingCredit"]:
            messages.append("The amount applied can't exceed the remaining credit on the credit note.")
        if amount > invoice["AmountDue"]:
            messages.append("The amount applied can't exceed the amount due on the invoice.")
        if messages:
            raise ValidationFailure(messages)
        allocation = {"AllocationID": str(uuid.uuid4()), "Amount": amount, "Date": element.get("Date"),
                      "Invoice": {"InvoiceID": invoice["InvoiceID"], "InvoiceNumber": invoice.get("InvoiceNumber")},
                      "CreditNote": {"CreditNoteID": note["CreditNoteID"],
                                     "CreditNoteNumber": note.get("CreditNoteNumber")}}
        note["RemainingCredit"] -= amount
        note["Allocations"].append(allocation)
        invoice["AmountDue"] -= amount
        invoice["AmountCredited"] += amount
        invoice["Allocations"].append(allocation)
        if invoice["AmountDue"] == 0:
            invoice["Status"] = "PAID"
        if note["RemainingCredit"] == 0:
            note["Status"] = "PAID"
        return allocation

    def _create_payment(self, element: dict, update: bool) -> dict:
        invoice = self.invoices.get(((element.get("Invoice") or {}).get("InvoiceID")) or "")
        account = self.accounts.get(((element.get("Account") or {}).get("Code")) or "")
        amount = _money(element.get("Amount"))
        messages = []
        if invoice is None or invoice["Status"] != "AUTHORISED":
            messages.append("Payment can only be made against an authorised invoice.")
        if account is None or account["Type"] != "BANK":
            messages.append("Payments need a bank account, or an account with payments enabled.")
        if invoice is not None and amount > invoice["AmountDue"]:
            messages.append("Payment amount exceeds the amount outstanding on this document.")
        if messages:
            raise ValidationFailure(messages)
        payment = {"PaymentID": str(uuid.uuid4()), "Amount": amount, "Date": element.get("Date"),
                   "Reference": element.get("Reference"), "Status": "AUTHORISED",
                   "Invoice": {"InvoiceID": invoice["InvoiceID"]}, "Account": {"Code": account["Code"]}}
        invoice["AmountDue"] -= amount
        invoice["AmountPaid"] += amount
        if invoice["AmountDue"] == 0:
            invoice["Status"] = "PAID"
        self.payments[payment["PaymentID"]] = payment
        return payment

    def _update_status(self, collection: str, document_id: str, element: dict) -> dict:
        store = self.invoices if collection == "Invoices" else self.credit_notes
        document = store.get(document_id)
        if document is None:
            raise ValidationFailure([f"{collection[:-1]} {document_id} does not exist."])
        status = element.get("Status")
        if status != "VOIDED":
            raise ValidationFailure(["This fake organisation only updates a document's status to VOIDED."])
        if document.get("Allocations") or document.get("Payments"):
            raise ValidationFailure(["This document cannot be voided as it has payments or allocations applied."])
        if document["Status"] not in ("AUTHORISED", "VOIDED"):
            raise ValidationFailure([f"A document in status {document['Status']} cannot be voided."])
        document["Status"] = "VOIDED"
        if collection == "Invoices":
            document["AmountDue"] = Decimal(0)
        else:
            document["RemainingCredit"] = Decimal(0)
        return document

    # -- reads --------------------------------------------------------------------------------

    def _get(self, collection: str, rest: list[str], args) -> dict:
        store = {"Contacts": self.contacts, "Items": self.items, "Invoices": self.invoices,
                 "CreditNotes": self.credit_notes, "Payments": self.payments}.get(collection)
        if store is None:
            if collection == "TaxRates":
                return {"TaxRates": [{"TaxType": t, "EffectiveRate": r, "Status": "ACTIVE"}
                                     for t, r in self.tax_rates.items()]}
            if collection == "Accounts":
                return {"Accounts": list(self.accounts.values())}
            raise KeyError(collection)
        records = list(store.values())
        if rest:
            records = [r for r in records if rest[0] in (r.get(f"{collection[:-1]}ID"), r.get("Code"))]
            if not records:
                raise KeyError(rest[0])
        if args.get("InvoiceNumbers"):
            numbers = set(args["InvoiceNumbers"].split(","))
            records = [r for r in records if r.get("InvoiceNumber") in numbers]
        if args.get("where"):
            for field_name, value in re.findall(r'(\w+)\s*==\s*"((?:[^"\\]|\\.)*)"', args["where"]):
                value = value.replace('\\"', '"').replace("\\\\", "\\")
                records = [r for r in records if str(r.get(field_name)) == value]
        return {collection: [self._public(collection, r) for r in records]}

    def _public(self, collection: str, record: dict) -> dict:
        """A record as Xero answers it (dates in Xero's form)."""
        view = dict(record)
        for name in ("Date", "DueDate"):
            if isinstance(view.get(name), str) and not view[name].startswith("/Date("):
                view[name] = _xero_date(view[name])
        if collection in ("Invoices", "CreditNotes"):
            view["Allocations"] = [{**a, "Date": _xero_date(a.get("Date"))} for a in record.get("Allocations", [])]
        if collection == "Allocations":
            view["Date"] = _xero_date(record.get("Date"))
        return view

    # -- for assertions -----------------------------------------------------------------------

    def invoice_by_number(self, number: str) -> dict[str, Any]:
        [invoice] = [i for i in self.invoices.values() if i.get("InvoiceNumber") == number]
        return invoice

    def credit_note_by_number(self, number: str) -> dict[str, Any]:
        [note] = [n for n in self.credit_notes.values() if n.get("CreditNoteNumber") == number]
        return note


def _element_id(element: dict) -> dict:
    return {k: v for k, v in element.items() if k in ("InvoiceID", "CreditNoteID", "ContactID", "ItemID")}


def _echo(collection: str, element: dict) -> dict:
    """An element Xero refused, answered back with the fields it was sent."""
    return dict(element)
