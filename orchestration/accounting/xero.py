"""Xero: contacts, items, ACCREC invoices, credit notes, their allocations to invoices, recorded
payments, and voids (docs/accounting-sync.md). Requests follow Xero's Accounting API
(tests/contracts/xero).

How a Meterline invoice becomes a Xero invoice, amounts exact to the cent:

- each line posts to its mapped item and account, with its tax type; `LineAmount` is the fee
  less what progressive billing already invoiced and less its coupon share (`DiscountAmount`),
  `TaxAmount` the line's share of the invoice's rounded taxes (books.allocate). So Xero's
  SubTotal and TotalTax are the invoice's subtotal and tax, to the cent.
- prepaid credits (wallets) are a negative, untaxed line on the prepaid-credits item, whose
  account is the liability the credits were bought into;
- credit notes that paid the invoice are Xero credit notes allocated to it, so Xero's
  AmountDue after the allocations is Meterline's total due.

Quantities and unit prices go to Xero when it can hold them (4 decimals); otherwise the line
is sent as one unit of its amount and the description keeps the exact quantity.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from orchestration.accounting.books import CreditNote, Invoice, tidy
from orchestration.accounting.http import (
    AlreadyExists,
    ApiSession,
    ConfigError,
    CredentialsError,
    OAuthToken,
    PermanentSyncError,
    RetryPolicy,
    Secret,
    UncertainOutcome,
    loads,
)
from orchestration.accounting.mappings import MissingMapping, ProviderMappings
from orchestration.accounting.sync import ElementOutcome, Operation, ProviderBase, Remote, RemoteIds, Sendable

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.xero.com/api.xro/2.0"
DEFAULT_TOKEN_URL = "https://identity.xero.com/connect/token"
BATCH_SIZE = 50
"""Xero advises at most 50 invoices per request."""
XERO_DECIMALS = 4
"""Quantities and unit amounts Xero keeps (with unitdp=4)."""


@dataclass(frozen=True)
class XeroConfig:
    tenant_id: str
    client_id: str
    client_secret: Secret
    api_url: str = DEFAULT_API_URL
    token_url: str = DEFAULT_TOKEN_URL

    @property
    def tenant(self) -> str:
        return self.tenant_id

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> XeroConfig:
        """A Xero custom connection (client credentials): METERLINE_XERO_CLIENT_ID,
        METERLINE_XERO_CLIENT_SECRET, METERLINE_XERO_TENANT_ID; METERLINE_XERO_API_URL and
        METERLINE_XERO_TOKEN_URL point elsewhere than Xero (a test server)."""
        env = os.environ if env is None else env
        required = ["METERLINE_XERO_CLIENT_ID", "METERLINE_XERO_CLIENT_SECRET", "METERLINE_XERO_TENANT_ID"]
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigError(f"Xero credentials missing from the environment: {', '.join(missing)}")
        return cls(tenant_id=env["METERLINE_XERO_TENANT_ID"], client_id=env["METERLINE_XERO_CLIENT_ID"],
                   client_secret=Secret(env["METERLINE_XERO_CLIENT_SECRET"]),
                   api_url=env.get("METERLINE_XERO_API_URL", DEFAULT_API_URL),
                   token_url=env.get("METERLINE_XERO_TOKEN_URL", DEFAULT_TOKEN_URL))

    def session(self, http: httpx.Client, *, policy: RetryPolicy | None = None, sleep=None) -> ApiSession:
        token = OAuthToken(self.token_url, self.client_id, self.client_secret,
                           {"grant_type": "client_credentials",
                            "scope": "accounting.transactions accounting.contacts accounting.settings"}, http=http)
        session = ApiSession(base_url=self.api_url, token=token, http=http, headers={"xero-tenant-id": self.tenant_id},
                             policy=policy or RetryPolicy())
        if sleep is not None:
            session.sleep = sleep
        return session


def _fits(value: Decimal, decimals: int = XERO_DECIMALS) -> bool:
    return value == value.quantize(Decimal(1).scaleb(-decimals))


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _period(start, end) -> str:
    return f"{start.isoformat()} to {end.isoformat()}" if start and end else ""


class XeroProvider(ProviderBase):
    name = "xero"
    object_types = ("contact", "item", "invoice", "credit_note", "allocation", "payment", "invoice_void",
                    "credit_note_void")

    @property
    def provider_mappings(self) -> ProviderMappings:
        return self.mappings.for_provider("xero")

    def batch_size(self, object_type: str) -> int:
        return BATCH_SIZE if object_type in ("contact", "item", "invoice", "credit_note", "payment") else 1

    # -- what to send -------------------------------------------------------------------------

    def operations(self) -> list[Operation]:
        operations: list[Operation] = []
        # Xero wants contact names unique: customers sharing a name get their id after it.
        names = Counter(customer.name for customer in self.books.customers.values())
        self._contact_names = {c.customer_id: c.name if names[c.name] == 1 else f"{c.name} ({c.customer_id})"
                               for c in self.books.customers.values()}
        for customer in self.books.customers.values():
            operations.append(Operation("contact", customer.customer_id, customer.customer_id,
                                        build=lambda remote, c=customer: self._contact(c), mutable=True))
        items: dict[str, Any] = {}
        invoice_items: dict[str, set[str]] = {}
        for document in [*self.books.invoices, *self.books.credit_notes]:
            codes = set()
            for line in document.lines:
                try:
                    item = self.provider_mappings.item_for(line.metric_code, line.fee_kind)
                except MissingMapping:
                    continue  # the document's own operation reports it
                items[item.code] = item
                codes.add(item.code)
            if isinstance(document, Invoice) and document.prepaid_credit_amount:
                try:
                    item = self.provider_mappings.prepaid_credits_item()
                    items[item.code] = item
                    codes.add(item.code)
                except MissingMapping:
                    pass
            invoice_items[document.invoice_id if isinstance(document, Invoice) else document.credit_note_id] = codes
        for code, item in sorted(items.items()):
            operations.append(Operation("item", code, code, build=lambda remote, i=item: {
                "Code": i.code, "Name": i.name[:50], "IsSold": True, "SalesDetails": {"AccountCode": i.account_code}},
                mutable=True))
        for invoice in self.books.invoices:
            operations.append(Operation(
                "invoice", invoice.invoice_id, invoice.number,
                build=lambda remote, i=invoice: self._invoice(i, remote),
                depends_on=(("contact", invoice.customer_id),
                            *(("item", code) for code in sorted(invoice_items[invoice.invoice_id]))),
                total=invoice.subtotal_including_taxes - invoice.prepaid_credit_amount, currency=invoice.currency))
        for note in self.books.credit_notes:
            operations.append(Operation(
                "credit_note", note.credit_note_id, note.number,
                build=lambda remote, n=note: self._credit_note(n, remote),
                depends_on=(("contact", note.customer_id),
                            *(("item", code) for code in sorted(invoice_items[note.credit_note_id]))),
                total=note.total_amount, currency=note.currency))
        for allocation in self.books.allocations:
            invoice = self._invoices[allocation.invoice_id]
            note = self._credit_notes.get(allocation.credit_note_id)
            if note is None or invoice.voided_at or note.voided_at:
                continue  # a voided document's allocations were given back
            operations.append(Operation(
                "allocation", allocation.allocation_id, f"{note.number} to {invoice.number}",
                # The credit note's id goes in the request path; the body is the allocation.
                build=lambda remote, a=allocation: {
                    "CreditNoteID": remote[("credit_note", a.credit_note_id)].remote_id,
                    "Allocations": [{"Amount": a.amount, "Date": a.allocated_on.isoformat(),
                                     "Invoice": {"InvoiceID": remote[("invoice", a.invoice_id)].remote_id}}]},
                depends_on=(("credit_note", allocation.credit_note_id), ("invoice", allocation.invoice_id)),
                total=allocation.amount, currency=invoice.currency))
        for payment in self.books.payments:
            invoice = self._invoices[payment.invoice_id]
            if invoice.voided_at:
                continue
            operations.append(Operation(
                "payment", payment.payment_id, f"{invoice.number} {payment.paid_on}",
                build=lambda remote, pay=payment: self._payment(pay, remote),
                depends_on=(("invoice", payment.invoice_id),), total=payment.amount, currency=invoice.currency))
        # Voids, once the voided document is in Xero: its status becomes VOIDED.
        voided = [("invoice", "Invoices", "InvoiceID", i.invoice_id, i.number) for i in self.books.invoices
                  if i.voided_at] + [("credit_note", "CreditNotes", "CreditNoteID", n.credit_note_id, n.number)
                                     for n in self.books.credit_notes if n.voided_at]
        for object_type, collection, id_field, local_id, number in voided:
            operations.append(Operation(
                f"{object_type}_void", local_id, number,
                build=lambda remote, t=object_type, c=collection, f=id_field, i=local_id: {
                    c: [{f: remote[(t, i)].remote_id, "Status": "VOIDED"}]},
                depends_on=((object_type, local_id),)))
        return operations

    def _contact(self, customer) -> dict[str, Any]:
        contact: dict[str, Any] = {"Name": self._contact_names[customer.customer_id],
                                   "ContactNumber": customer.customer_id}
        if customer.email:
            contact["EmailAddress"] = customer.email
        if customer.currency:
            contact["DefaultCurrency"] = customer.currency
        return contact

    def _line_item(self, description: str, quantity: Decimal, unit_amount: Decimal | None, net: Decimal,
                   discount: Decimal, tax: Decimal, metric_code, fee_kind, tax_codes) -> dict[str, Any]:
        mappings = self.provider_mappings
        item = mappings.item_for(metric_code, fee_kind)
        line: dict[str, Any] = {"Description": description, "ItemCode": item.code, "AccountCode": item.account_code,
                                "TaxType": mappings.tax_type_for(tax_codes), "TaxAmount": tax, "LineAmount": net}
        if quantity > 0 and _fits(quantity):
            line["Quantity"] = tidy(quantity)
            gross = net + discount
            if unit_amount is not None and _fits(unit_amount) and quantity * unit_amount == gross:
                line["UnitAmount"] = tidy(unit_amount)
        else:
            # Xero holds 4 decimals of quantity: one unit of the amount, the exact quantity in words.
            line["Quantity"] = Decimal(1)
            if quantity != 1:
                line["Description"] = f"{description} (quantity {tidy(quantity):f})"
        if discount:
            line["DiscountAmount"] = discount
        return line

    def _invoice(self, invoice: Invoice, remote: RemoteIds) -> dict[str, Any]:
        lines = []
        for line in invoice.lines:
            period = _period(line.service_period_start, line.service_period_end)
            lines.append(self._line_item(f"{line.description}" + (f", {period}" if period else ""), line.quantity,
                                         line.unit_amount, line.net_amount, line.discount_amount, line.tax_amount,
                                         line.metric_code, line.fee_kind, line.tax_codes))
        if invoice.prepaid_credit_amount:
            item = self.provider_mappings.prepaid_credits_item()
            lines.append({"Description": "Prepaid credits applied", "Quantity": Decimal(1),
                          "UnitAmount": -invoice.prepaid_credit_amount, "LineAmount": -invoice.prepaid_credit_amount,
                          "ItemCode": item.code, "AccountCode": item.account_code,
                          "TaxType": self.provider_mappings.tax_type_for(()), "TaxAmount": Decimal(0)})
        return {
            "Type": "ACCREC",
            "Contact": {"ContactID": remote[("contact", invoice.customer_id)].remote_id},
            "InvoiceNumber": invoice.number,
            "Reference": _period(invoice.period_start, invoice.period_end) or invoice.invoice_id,
            "Date": invoice.issuing_date.isoformat(),
            "DueDate": (invoice.issuing_date + timedelta(days=self.mappings.payment_terms_days)).isoformat(),
            "CurrencyCode": invoice.currency,
            "LineAmountTypes": "Exclusive",
            "Status": "AUTHORISED",
            "LineItems": lines,
        }

    def _credit_note(self, note: CreditNote, remote: RemoteIds) -> dict[str, Any]:
        lines = [self._line_item(line.description, Decimal(1), line.amount, line.amount, Decimal(0), line.tax_amount,
                                 line.metric_code, line.fee_kind, line.tax_codes) for line in note.lines]
        credited = self._invoices.get(note.invoice_id) if note.invoice_id else None
        return {
            "Type": "ACCRECCREDIT",
            "Contact": {"ContactID": remote[("contact", note.customer_id)].remote_id},
            "CreditNoteNumber": note.number,
            "Reference": f"{note.reason}" + (f", credits {credited.number}" if credited else ""),
            "Date": note.issuing_date.isoformat(),
            "CurrencyCode": note.currency,
            "LineAmountTypes": "Exclusive",
            "Status": "AUTHORISED",
            "LineItems": lines,
        }

    def _payment(self, payment, remote: RemoteIds) -> dict[str, Any]:
        account = self.provider_mappings.settings.get("payments_account")
        if not account:
            raise MissingMapping("a payment was recorded but xero.payments_account (the bank account code it was "
                                 "paid into) is not set in accounting.yml")
        # The reference carries the payment's id: a lookup after a lost answer finds it by it.
        return {"Invoice": {"InvoiceID": remote[("invoice", payment.invoice_id)].remote_id},
                "Account": {"Code": str(account)}, "Date": payment.paid_on.isoformat(), "Amount": payment.amount,
                "Reference": f"{payment.reference + ' ' if payment.reference else ''}[{payment.payment_id[:12]}]"}

    # -- requests -----------------------------------------------------------------------------

    def _session(self) -> ApiSession:
        if self.session is None:
            raise PermanentSyncError("no Xero session (a dry run sends nothing)")
        return self.session

    def send(self, object_type: str, batch: Sequence[Sendable], batch_key: str) -> list[ElementOutcome]:
        session = self._session()
        if object_type in ("contact", "item", "invoice", "credit_note", "payment"):
            collection = {"contact": "Contacts", "item": "Items", "invoice": "Invoices",
                          "credit_note": "CreditNotes", "payment": "Payments"}[object_type]
            elements = []
            for item in batch:
                element = dict(item.payload)
                if item.record.remote_id and object_type in ("contact", "item"):
                    element["ContactID" if object_type == "contact" else "ItemID"] = item.record.remote_id
                elements.append(element)
            # PUT creates; POST creates or updates (a changed contact or item).
            method = "POST" if any(i.record.remote_id for i in batch) else "PUT"
            response = session.request(method, f"/{collection}", params={"summarizeErrors": "false", "unitdp": "4"},
                                        body={collection: elements}, idempotency_key=batch_key)
            return self._element_outcomes(response, collection, object_type, len(batch))
        [item] = batch
        if object_type == "allocation":
            response = session.request("PUT", f"/CreditNotes/{item.payload['CreditNoteID']}/Allocations",
                                       params={"summarizeErrors": "false"},
                                       body={"Allocations": item.payload["Allocations"]},
                                       idempotency_key=batch_key)
            return self._element_outcomes(response, "Allocations", object_type, 1)
        if object_type in ("invoice_void", "credit_note_void"):
            collection = "Invoices" if object_type == "invoice_void" else "CreditNotes"
            [element] = item.payload[collection]
            remote_id = element["InvoiceID" if collection == "Invoices" else "CreditNoteID"]
            response = session.request("POST", f"/{collection}/{remote_id}", body=item.payload,
                                       idempotency_key=batch_key)
            return self._element_outcomes(response, collection, object_type, 1)
        raise ValueError(f"unknown Xero object type {object_type}")

    def _element_outcomes(self, response: httpx.Response, collection: str, object_type: str,
                          expected: int) -> list[ElementOutcome]:
        status = response.status_code
        if status == 200:
            elements = loads(response.content).get(collection) or []
            if len(elements) != expected:
                raise PermanentSyncError(f"Xero answered {len(elements)} {collection} for {expected} sent", status)
            return [self._outcome(element, object_type, status) for element in elements]
        if status == 400:
            body = _json_or_none(response)
            messages = _validation_messages(body) or [response.text[:500]]
            elements = (body or {}).get("Elements") or []
            if len(elements) == expected:
                return [self._outcome({**element, "HasErrors": True}, object_type, status) for element in elements]
            return [PermanentSyncError(f"Xero refused the request: {'; '.join(messages)}", status)] * expected
        if status == 403:
            raise CredentialsError(f"Xero refused the organisation (tenant) {self.tenant}: {response.text[:300]}", status)
        raise PermanentSyncError(f"Xero answered HTTP {status}: {response.text[:300]}", status)

    def _outcome(self, element: dict[str, Any], object_type: str, status: int) -> ElementOutcome:
        errors = [e.get("Message", "") for e in element.get("ValidationErrors") or []]
        if element.get("HasErrors") or element.get("HasValidationErrors") or errors:
            message = "; ".join(errors) or "validation error"
            if any("must be unique" in e or "already exists" in e or "already assigned" in e for e in errors):
                # Sent before (by a run that lost the answer, or by hand): looked up and adopted.
                return AlreadyExists(f"Xero says it exists already: {message}", status)
            return PermanentSyncError(f"Xero refused it: {message}", status)
        if object_type == "contact":
            return Remote(element["ContactID"], element.get("ContactNumber"))
        if object_type == "item":
            return Remote(element["ItemID"], element.get("Code"))
        if object_type in ("invoice", "invoice_void"):
            return Remote(element["InvoiceID"], element.get("InvoiceNumber"), _decimal(element.get("Total")))
        if object_type in ("credit_note", "credit_note_void"):
            return Remote(element["CreditNoteID"], element.get("CreditNoteNumber"), _decimal(element.get("Total")))
        if object_type == "allocation":
            return Remote(element.get("AllocationID") or "", None, _decimal(element.get("Amount")))
        if object_type == "payment":
            return Remote(element["PaymentID"], element.get("Reference"), _decimal(element.get("Amount")))
        raise ValueError(object_type)

    # -- lookups after an uncertain outcome ---------------------------------------------------

    def lookup(self, sendable: Sendable) -> Remote | None:
        session = self._session()
        object_type = sendable.operation.object_type
        payload = sendable.payload
        if object_type == "contact":
            found = self._get(session, "/Contacts", "Contacts",
                              {"where": f'ContactNumber=="{_quote(payload["ContactNumber"])}"'})
            return Remote(found[0]["ContactID"], found[0].get("ContactNumber")) if found else None
        if object_type == "item":
            found = self._get(session, "/Items", "Items", {"where": f'Code=="{_quote(payload["Code"])}"'})
            return Remote(found[0]["ItemID"], found[0].get("Code")) if found else None
        if object_type == "invoice":
            found = self._get(session, "/Invoices", "Invoices", {"InvoiceNumbers": payload["InvoiceNumber"]})
            found = [f for f in found if f.get("Status") != "DELETED"]
            return Remote(found[0]["InvoiceID"], found[0].get("InvoiceNumber"), _decimal(found[0].get("Total"))) \
                if found else None
        if object_type == "credit_note":
            found = self._get(session, "/CreditNotes", "CreditNotes",
                              {"where": f'CreditNoteNumber=="{_quote(payload["CreditNoteNumber"])}"'})
            found = [f for f in found if f.get("Status") != "DELETED"]
            return Remote(found[0]["CreditNoteID"], found[0].get("CreditNoteNumber"),
                          _decimal(found[0].get("Total"))) if found else None
        if object_type == "allocation":
            [allocation] = payload["Allocations"]
            [note] = self._get(session, f"/CreditNotes/{payload['CreditNoteID']}", "CreditNotes", {}) or [{}]
            for existing in note.get("Allocations") or []:
                if ((existing.get("Invoice") or {}).get("InvoiceID") == allocation["Invoice"]["InvoiceID"]
                        and _decimal(existing.get("Amount")) == allocation["Amount"]
                        and not existing.get("IsDeleted")):
                    return Remote(existing.get("AllocationID") or "", None, allocation["Amount"])
            return None
        if object_type == "payment":
            found = self._get(session, "/Payments", "Payments",
                              {"where": f'Reference=="{_quote(payload["Reference"])}"'})
            found = [f for f in found if f.get("Status") != "DELETED"]
            return Remote(found[0]["PaymentID"], found[0].get("Reference"), _decimal(found[0].get("Amount"))) \
                if found else None
        if object_type in ("invoice_void", "credit_note_void"):
            collection = "Invoices" if object_type == "invoice_void" else "CreditNotes"
            [element] = payload[collection]
            remote_id = element["InvoiceID" if collection == "Invoices" else "CreditNoteID"]
            [found] = self._get(session, f"/{collection}/{remote_id}", collection, {}) or [{}]
            return Remote(remote_id) if found.get("Status") == "VOIDED" else None
        raise ValueError(object_type)

    def _get(self, session: ApiSession, path: str, collection: str, params: dict[str, str]) -> list[dict[str, Any]]:
        response = session.request("GET", path, params=params)
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            raise UncertainOutcome(f"Xero lookup {path} answered HTTP {response.status_code}", response.status_code)
        return loads(response.content).get(collection) or []



def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _json_or_none(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = loads(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _validation_messages(body: dict[str, Any] | None) -> list[str]:
    if not body:
        return []
    messages = []
    for element in body.get("Elements") or []:
        messages.extend(e.get("Message", "") for e in element.get("ValidationErrors") or [])
    return messages or [m for m in [body.get("Message"), body.get("Detail")] if m]

