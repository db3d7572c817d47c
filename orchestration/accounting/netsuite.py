"""NetSuite: customers, invoices and credit memos through the REST record API, written as
upserts by external id (docs/accounting-sync.md).

`PUT /services/rest/record/v1/<type>/eid:<external id>` creates the record or replaces the one
with that external id, so sending twice never makes two records: external ids are Meterline's
own (`meterline-<customer id>`, the invoice and credit-note numbers). The answer is 204 with
the record's URL in `Location`, whose last segment is NetSuite's internal id. A credit note's
payment of a later invoice is an `apply` line on its credit memo (a PATCH, also idempotent).

Lines carry the net amount (after progressive billing and coupons) and `tax1Amt`, the line's
share of the invoice's rounded taxes; prepaid credits are a negative line on the mapped item.

NetSuite has no void in its REST record API: voided invoices and credit notes are not sent, and
those sent before their void are counted as `not_supported`, for a person to void in NetSuite.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from orchestration.accounting.books import Books, CreditNote, Invoice, tidy
from orchestration.accounting.http import (
    ApiSession,
    ConfigError,
    OAuthToken,
    PermanentSyncError,
    RetryPolicy,
    Secret,
    UncertainOutcome,
    loads,
)
from orchestration.accounting.mappings import AccountingMappings, ProviderMappings
from orchestration.accounting.sync import ElementOutcome, Operation, ProviderBase, Remote, RemoteIds, Sendable

RECORD_TYPES = {"customer": "customer", "invoice": "invoice", "credit_note": "creditMemo", "allocation": "creditMemo"}


@dataclass(frozen=True)
class NetSuiteConfig:
    account_id: str
    client_id: str
    client_secret: Secret
    refresh_token: Secret
    base_url: str

    @property
    def tenant(self) -> str:
        return self.account_id

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NetSuiteConfig:
        """METERLINE_NETSUITE_ACCOUNT_ID, _CLIENT_ID, _CLIENT_SECRET and _REFRESH_TOKEN (OAuth 2.0
        authorisation code grant); METERLINE_NETSUITE_URL overrides the account's REST host."""
        env = os.environ if env is None else env
        required = ["METERLINE_NETSUITE_ACCOUNT_ID", "METERLINE_NETSUITE_CLIENT_ID",
                    "METERLINE_NETSUITE_CLIENT_SECRET", "METERLINE_NETSUITE_REFRESH_TOKEN"]
        missing = [name for name in required if not env.get(name)]
        if missing:
            raise ConfigError(f"NetSuite credentials missing from the environment: {', '.join(missing)}")
        account = env["METERLINE_NETSUITE_ACCOUNT_ID"]
        host = account.lower().replace("_", "-")
        return cls(account_id=account, client_id=env["METERLINE_NETSUITE_CLIENT_ID"],
                   client_secret=Secret(env["METERLINE_NETSUITE_CLIENT_SECRET"]),
                   refresh_token=Secret(env["METERLINE_NETSUITE_REFRESH_TOKEN"]),
                   base_url=env.get("METERLINE_NETSUITE_URL", f"https://{host}.suitetalk.api.netsuite.com"))

    def session(self, http: httpx.Client, *, policy: RetryPolicy | None = None, sleep=None) -> ApiSession:
        token = OAuthToken(f"{self.base_url}/services/rest/auth/oauth2/v1/token", self.client_id, self.client_secret,
                           {"grant_type": "refresh_token", "refresh_token": self.refresh_token}, http=http)
        session = ApiSession(base_url=f"{self.base_url}/services/rest/record/v1", token=token, http=http,
                             policy=policy or RetryPolicy())
        if sleep is not None:
            session.sleep = sleep
        return session


def customer_external_id(customer_id: str) -> str:
    return f"meterline-{customer_id}"


class NetSuiteProvider(ProviderBase):
    name = "netsuite"
    object_types = ("customer", "invoice", "credit_note", "allocation")

    def __init__(self, books: Books, mappings: AccountingMappings, session: ApiSession | None, tenant: str):
        super().__init__(books, mappings, session, tenant)
        # Voided documents are never sent; those sent before their void stay live in NetSuite.
        self.not_supported: list[tuple[str, str, str]] = [
            ("invoice", i.invoice_id, i.number) for i in books.invoices if i.voided_at] + [
            ("credit_note", n.credit_note_id, n.number) for n in books.credit_notes if n.voided_at]

    @property
    def provider_mappings(self) -> ProviderMappings:
        return self.mappings.for_provider("netsuite")

    def batch_size(self, object_type: str) -> int:
        return 1  # the record API writes one record per request

    def operations(self) -> list[Operation]:
        operations = []
        for customer in self.books.customers.values():
            operations.append(Operation("customer", customer.customer_id, customer.customer_id,
                                        build=lambda remote, c=customer: self._customer(c), mutable=True))
        for invoice in self.books.invoices:
            if invoice.voided_at:
                continue
            operations.append(Operation(
                "invoice", invoice.invoice_id, invoice.number, build=lambda remote, i=invoice: self._invoice(i, remote),
                depends_on=(("customer", invoice.customer_id),),
                total=invoice.subtotal_including_taxes - invoice.prepaid_credit_amount, currency=invoice.currency))
        for note in self.books.credit_notes:
            if note.voided_at:
                continue
            operations.append(Operation(
                "credit_note", note.credit_note_id, note.number, build=lambda remote, n=note: self._credit_memo(n, remote),
                depends_on=(("customer", note.customer_id),), total=note.total_amount, currency=note.currency))
        for allocation in self.books.allocations:
            invoice = self._invoices[allocation.invoice_id]
            note = self._credit_notes.get(allocation.credit_note_id)
            if note is None or invoice.voided_at or note.voided_at:
                continue
            operations.append(Operation(
                "allocation", allocation.allocation_id, f"{note.number} to {invoice.number}",
                build=lambda remote, a=allocation, n=note: {
                    "creditMemo": n.number,
                    "apply": {"items": [{"doc": {"id": remote[("invoice", a.invoice_id)].remote_id}, "apply": True,
                                         "amount": a.amount}]}},
                depends_on=(("credit_note", allocation.credit_note_id), ("invoice", allocation.invoice_id)),
                total=allocation.amount, currency=invoice.currency))
        return operations

    def _customer(self, customer) -> dict[str, Any]:
        record: dict[str, Any] = {"companyName": customer.name, "entityId": customer.customer_id,
                                  "subsidiary": {"id": str(self._setting("subsidiary_id"))}}
        if customer.email:
            record["email"] = customer.email
        if customer.currency:
            record["currency"] = {"refName": customer.currency}
        return record

    def _setting(self, name: str) -> Any:
        value = self.provider_mappings.settings.get(name)
        if value in (None, ""):
            raise PermanentSyncError(f"netsuite.{name} is not set in accounting.yml")
        return value

    def _line(self, description: str, quantity: Decimal, net: Decimal, tax: Decimal, metric_code, fee_kind,
              tax_codes) -> dict[str, Any]:
        mappings = self.provider_mappings
        line: dict[str, Any] = {"item": {"id": mappings.item_for(metric_code, fee_kind).code},
                                "description": description[:999], "amount": net,
                                "taxCode": {"id": mappings.tax_type_for(tax_codes)}, "tax1Amt": tax}
        if quantity > 0:
            line["quantity"] = tidy(quantity)
        return line

    def _lines_of(self, invoice: Invoice) -> list[dict[str, Any]]:
        lines = [self._line(line.description, line.quantity, line.net_amount, line.tax_amount, line.metric_code,
                            line.fee_kind, line.tax_codes) for line in invoice.lines]
        if invoice.prepaid_credit_amount:
            item = self.provider_mappings.prepaid_credits_item()
            lines.append({"item": {"id": item.code}, "description": "Prepaid credits applied",
                          "amount": -invoice.prepaid_credit_amount,
                          "taxCode": {"id": self.provider_mappings.tax_type_for(())}, "tax1Amt": Decimal(0)})
        return lines

    def _invoice(self, invoice: Invoice, remote: RemoteIds) -> dict[str, Any]:
        return {
            "tranId": invoice.number,
            "tranDate": invoice.issuing_date.isoformat(),
            "dueDate": (invoice.issuing_date + timedelta(days=self.mappings.payment_terms_days)).isoformat(),
            "entity": {"id": remote[("customer", invoice.customer_id)].remote_id},
            "currency": {"refName": invoice.currency},
            "memo": f"Meterline invoice {invoice.invoice_id}",
            "item": {"items": self._lines_of(invoice)},
        }

    def _credit_memo(self, note: CreditNote, remote: RemoteIds) -> dict[str, Any]:
        credited = self._invoices.get(note.invoice_id) if note.invoice_id else None
        return {
            "tranId": note.number,
            "tranDate": note.issuing_date.isoformat(),
            "entity": {"id": remote[("customer", note.customer_id)].remote_id},
            "currency": {"refName": note.currency},
            "memo": f"{note.reason}" + (f", credits {credited.number}" if credited else ""),
            "item": {"items": [self._line(line.description, Decimal(1), line.amount, line.tax_amount,
                                          line.metric_code, line.fee_kind, line.tax_codes) for line in note.lines]},
        }

    # -- requests -----------------------------------------------------------------------------

    def _external_id(self, item: Sendable) -> str:
        operation = item.operation
        if operation.object_type == "customer":
            return customer_external_id(operation.local_id)
        if operation.object_type == "allocation":
            return item.payload["creditMemo"]
        return operation.local_number or operation.local_id

    def send(self, object_type: str, batch: Sequence[Sendable], batch_key: str) -> list[ElementOutcome]:
        if self.session is None:
            raise PermanentSyncError("no NetSuite session (a dry run sends nothing)")
        [item] = batch
        record_type = RECORD_TYPES[object_type]
        external_id = self._external_id(item)
        path = f"/{record_type}/eid:{external_id}"
        if object_type == "allocation":
            response = self.session.request("PATCH", path, body={"apply": item.payload["apply"]},
                                            idempotency_key=batch_key)
        else:
            response = self.session.request("PUT", path, body=item.payload, idempotency_key=batch_key)
        if response.status_code in (200, 204):
            location = response.headers.get("Location", "")
            internal_id = location.rstrip("/").rsplit("/", 1)[-1] if location else ""
            if not internal_id:
                found = self._get(path)
                internal_id = str(found["id"]) if found else ""
            return [Remote(internal_id, external_id)]  # 204 says nothing of the total: a lookup would
        return [PermanentSyncError(f"NetSuite refused {record_type} {external_id}: {_error_details(response)}",
                                   response.status_code)]

    def _get(self, path: str) -> dict[str, Any] | None:
        assert self.session is not None
        response = self.session.request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise UncertainOutcome(f"NetSuite lookup {path} answered HTTP {response.status_code}", response.status_code)
        return loads(response.content)

    def lookup(self, sendable: Sendable) -> Remote | None:
        object_type = sendable.operation.object_type
        external_id = self._external_id(sendable)
        found = self._get(f"/{RECORD_TYPES[object_type]}/eid:{external_id}")
        if found is None:
            return None
        if object_type == "allocation":
            [wanted] = sendable.payload["apply"]["items"]
            for applied in (found.get("apply") or {}).get("items") or []:
                if (str((applied.get("doc") or {}).get("id")) == str(wanted["doc"]["id"]) and applied.get("apply")
                        and Decimal(str(applied.get("amount"))) == wanted["amount"]):
                    return Remote(str(found["id"]), external_id, wanted["amount"])
            return None
        total = found.get("total")
        return Remote(str(found["id"]), external_id, Decimal(str(total)) if total is not None else None)


def _error_details(response: httpx.Response) -> str:
    try:
        body = loads(response.content)
    except ValueError:
        return f"HTTP {response.status_code} {response.text[:300]}"
    details = [d.get("detail", "") for d in body.get("o:errorDetails") or []]
    return "; ".join(details) or body.get("title") or f"HTTP {response.status_code}"
