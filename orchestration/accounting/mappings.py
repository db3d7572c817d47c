"""How Meterline's lines post in an accounting system: catalog/accounting.yml (docs/accounting-sync.md).

A line's item (and through it its revenue account) is looked up by the line's metric
(`metric:<code>`), else its fee kind (`fee:<kind>`), else `default`. Its tax type by its taxes
(the tax codes joined by "+" in alphabetical order, `none` for an untaxed line), else `default`.
A line that nothing matches is a permanent error naming the keys that would match: retrying
cannot fix it, editing the mapping does (the next run sends the document).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestration.accounting.http import PermanentSyncError

MAPPINGS_FILE = "accounting.yml"
FEE_KINDS = ("subscription", "charge", "true_up", "add_on", "credit_purchase")
PROVIDER_SETTINGS = {"xero": {"payments_account"}, "netsuite": {"subsidiary_id"}}
"""What a provider's section holds besides its lookups: the bank account code payments go to
(Xero), the subsidiary customers belong to (NetSuite)."""


class MappingFileError(ValueError):
    """catalog/accounting.yml is malformed: the message names the file and the key."""


class MissingMapping(PermanentSyncError):
    """A line has no item or tax mapping."""


@dataclass(frozen=True)
class ItemMapping:
    code: str
    """The item's code (Xero) or internal id (NetSuite)."""
    name: str
    account_code: str | None


@dataclass(frozen=True)
class ProviderMappings:
    provider: str
    items: Mapping[str, ItemMapping] = field(default_factory=dict)
    tax_types: Mapping[str, str] = field(default_factory=dict)
    prepaid_credits: ItemMapping | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Provider-specific values that are not lookups (NetSuite's subsidiary, ...)."""

    def item_for(self, metric_code: str | None, fee_kind: str | None) -> ItemMapping:
        keys = ([f"metric:{metric_code}"] if metric_code else []) + ([f"fee:{fee_kind}"] if fee_kind else []) + ["default"]
        for key in keys:
            if key in self.items:
                return self.items[key]
        raise MissingMapping(f"no {self.provider} item for a line of metric {metric_code or '-'} and fee kind "
                             f"{fee_kind or '-'}: add one of {', '.join(keys)} under {self.provider}.items in "
                             f"{MAPPINGS_FILE}")

    def tax_type_for(self, tax_codes: tuple[str, ...]) -> str:
        key = "+".join(sorted(tax_codes)) if tax_codes else "none"
        for candidate in (key, "default"):
            if candidate in self.tax_types:
                return self.tax_types[candidate]
        raise MissingMapping(f"no {self.provider} tax type for a line taxed {key}: add {key} (or default) under "
                             f"{self.provider}.tax_types in {MAPPINGS_FILE}")

    def prepaid_credits_item(self) -> ItemMapping:
        if self.prepaid_credits is None:
            raise MissingMapping(f"an invoice was paid by prepaid credits but {self.provider}.prepaid_credits is not "
                                 f"set in {MAPPINGS_FILE} (the item, and its liability account, that the credits "
                                 "applied post to)")
        return self.prepaid_credits


@dataclass(frozen=True)
class AccountingMappings:
    path: Path | None
    payment_terms_days: int
    providers: Mapping[str, ProviderMappings]

    def for_provider(self, provider: str) -> ProviderMappings:
        if provider not in self.providers:
            raise MissingMapping(f"{MAPPINGS_FILE} has no {provider} section" if self.path
                                 else f"no {MAPPINGS_FILE} in the catalog: the {provider} mappings are missing")
        return self.providers[provider]


def _item(path: Path, where: str, value: Any, *, code_field: str) -> ItemMapping:
    if not isinstance(value, dict) or not value.get(code_field):
        raise MappingFileError(f"{path}: {where}: expected a mapping with '{code_field}'")
    unknown = set(value) - {code_field, "name", "account_code"}
    if unknown:
        raise MappingFileError(f"{path}: {where}: unknown field(s) {', '.join(sorted(unknown))}")
    return ItemMapping(code=str(value[code_field]), name=str(value.get("name") or value[code_field]),
                       account_code=str(value["account_code"]) if value.get("account_code") is not None else None)


def _provider(path: Path, name: str, section: Any, *, code_field: str, needs_account: bool) -> ProviderMappings:
    if not isinstance(section, dict):
        raise MappingFileError(f"{path}: {name}: expected a mapping")
    items: dict[str, ItemMapping] = {}
    for key, value in (section.get("items") or {}).items():
        kind, _, code = str(key).partition(":")
        if not (key == "default" or (kind in ("metric", "fee") and code)):
            raise MappingFileError(f"{path}: {name}.items.{key}: keys are metric:<code>, fee:<kind> or default")
        if kind == "fee" and code not in FEE_KINDS:
            raise MappingFileError(f"{path}: {name}.items.{key}: unknown fee kind {code!r} "
                                   f"(one of {', '.join(FEE_KINDS)})")
        item = _item(path, f"{name}.items.{key}", value, code_field=code_field)
        if needs_account and not item.account_code:
            raise MappingFileError(f"{path}: {name}.items.{key}: account_code is required")
        items[str(key)] = item
    tax_types = {}
    for key, value in (section.get("tax_types") or {}).items():
        if value is None or str(value) == "":
            raise MappingFileError(f"{path}: {name}.tax_types.{key}: empty tax type")
        tax_types["+".join(sorted(str(key).split("+")))] = str(value)
    prepaid = section.get("prepaid_credits")
    prepaid_item = _item(path, f"{name}.prepaid_credits", prepaid, code_field=code_field) if prepaid else None
    if prepaid_item and needs_account and not prepaid_item.account_code:
        raise MappingFileError(f"{path}: {name}.prepaid_credits: account_code is required")
    settings = {k: v for k, v in section.items() if k not in {"items", "tax_types", "prepaid_credits"}}
    unknown = set(settings) - PROVIDER_SETTINGS[name]
    if unknown:
        raise MappingFileError(f"{path}: {name}: unknown key(s) {', '.join(sorted(unknown))} (known: items, "
                               f"tax_types, prepaid_credits, {', '.join(sorted(PROVIDER_SETTINGS[name]))})")
    return ProviderMappings(provider=name, items=items, tax_types=tax_types, prepaid_credits=prepaid_item,
                            settings=settings)


def read_mappings(catalog_dir: Path) -> AccountingMappings:
    """catalog/accounting.yml, checked; an absent file means no mappings (every line would fail)."""
    path = catalog_dir / MAPPINGS_FILE
    if not path.exists():
        return AccountingMappings(path=None, payment_terms_days=30, providers={})
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise MappingFileError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise MappingFileError(f"{path}: expected a mapping at the top")
    unknown = set(document) - {"payment_terms_days", "xero", "netsuite"}
    if unknown:
        raise MappingFileError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    terms = document.get("payment_terms_days", 30)
    if not isinstance(terms, int) or terms < 0:
        raise MappingFileError(f"{path}: payment_terms_days: expected a whole number of days, got {terms!r}")
    providers = {}
    if "xero" in document:
        providers["xero"] = _provider(path, "xero", document["xero"], code_field="code", needs_account=True)
    if "netsuite" in document:
        providers["netsuite"] = _provider(path, "netsuite", document["netsuite"], code_field="id", needs_account=False)
    return AccountingMappings(path=path, payment_terms_days=terms, providers=providers)
