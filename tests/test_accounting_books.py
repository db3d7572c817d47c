"""Pure pieces of the accounting sync: splitting an invoice's rounded amounts over its lines,
the mappings file, the retry policy's reading of the network."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.accounting.books import BooksError, allocate
from orchestration.accounting.http import (
    ApiSession,
    CredentialsError,
    OAuthToken,
    RetryPolicy,
    Secret,
    TransientSyncError,
    UncertainOutcome,
)
from orchestration.accounting.mappings import MappingFileError, MissingMapping, read_mappings

precise = st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000"), places=12, allow_nan=False)


@given(shares=st.lists(precise, min_size=1, max_size=12), minor_unit=st.sampled_from([0, 2, 3]),
       drift=st.integers(min_value=-3, max_value=3))
def test_allocate_adds_up_exactly_and_stays_within_a_unit_of_each_share(shares, minor_unit, drift):
    unit = Decimal(1).scaleb(-minor_unit)
    # The total the invoice rounded, a few units away from the shares' exact sum (rounded per rate).
    total = (sum(shares) / unit).to_integral_value() * unit + drift * unit
    parts = allocate(total, shares, minor_unit)
    assert sum(parts) == total
    assert all(part == part.quantize(unit) for part in parts)
    slack = (abs(sum(shares) - total) / unit).to_integral_value() + 1
    assert all(abs(part - share) <= slack * unit for part, share in zip(parts, shares))


def test_allocate_by_hand():
    # 9.73 of coupons over three lines whose exact shares are 3.333..., 3.333..., 3.0633334: the
    # floors leave one cent, which goes to the largest remainder (the third, by 0.0000001 cent).
    assert allocate(Decimal("9.73"), [Decimal("3.333333333333"), Decimal("3.333333333333"),
                                      Decimal("3.063333333334")], 2) == [Decimal("3.33"), Decimal("3.33"),
                                                                         Decimal("3.07")]
    assert allocate(Decimal("0"), [Decimal("0"), Decimal("0")], 2) == [Decimal("0.00"), Decimal("0.00")]
    with pytest.raises(BooksError, match="not rounded"):
        allocate(Decimal("1.005"), [Decimal("1.005")], 2)
    with pytest.raises(BooksError, match="no lines"):
        allocate(Decimal("1.00"), [], 2)


def test_mappings_fall_back_and_name_what_is_missing(tmp_path: Path):
    (tmp_path / "accounting.yml").write_text(
        "xero:\n  items:\n    metric:tokens: {code: TOK, account_code: '210'}\n    fee:subscription: {code: SUB, "
        "account_code: '200'}\n  tax_types:\n    b+a: T1\n    none: NONE\n")
    xero = read_mappings(tmp_path).for_provider("xero")
    assert xero.item_for("tokens", "charge").code == "TOK"
    assert xero.item_for(None, "subscription").code == "SUB"
    assert xero.tax_type_for(("a", "b")) == "T1" and xero.tax_type_for(()) == "NONE"
    with pytest.raises(MissingMapping, match="add one of metric:storage, fee:charge, default under xero.items"):
        xero.item_for("storage", "charge")
    with pytest.raises(MissingMapping, match="no xero tax type for a line taxed vat"):
        xero.tax_type_for(("vat",))
    with pytest.raises(MissingMapping, match="prepaid_credits is not set"):
        xero.prepaid_credits_item()
    with pytest.raises(MissingMapping, match="no netsuite section"):
        read_mappings(tmp_path).for_provider("netsuite")

    for text, message in [
        ("xero:\n  items:\n    tokens: {code: T, account_code: '1'}\n", "xero.items.tokens: keys are"),
        ("xero:\n  items:\n    fee:usage: {code: T, account_code: '1'}\n", "unknown fee kind 'usage'"),
        ("xero:\n  items:\n    default: {code: T}\n", "xero.items.default: account_code is required"),
        ("xero:\n  tax_types:\n    none:\n", "xero.tax_types.none: empty tax type"),
        ("quickbooks: {}\n", r"unknown section\(s\) quickbooks"),
        ("payment_terms_days: soon\n", "payment_terms_days: expected a whole number"),
    ]:
        (tmp_path / "accounting.yml").write_text(text)
        with pytest.raises(MappingFileError, match=message) as raised:
            read_mappings(tmp_path)
        assert str(raised.value).startswith(str(tmp_path / "accounting.yml"))


def session_answering(*answers, policy=RetryPolicy(max_attempts=3, timeout=1.0)) -> tuple[ApiSession, list]:
    """A session whose server answers `answers` in turn (an int status, or an exception to raise)."""
    queue = list(answers)
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": f"token-{len(seen)}"})
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        return httpx.Response(status, headers=headers, json={})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    token = OAuthToken("https://auth.test/token", "id", Secret("secret"), {"grant_type": "client_credentials"},
                       http=http)
    waits: list[float] = []
    return ApiSession("https://api.test", token, http, policy=policy, sleep=waits.append), waits


def test_the_session_retries_what_can_be_retried_and_stops_on_what_cannot():
    session, waits = session_answering((429, {"Retry-After": "7"}), 503, 200)
    assert session.request("PUT", "/x", body={"a": Decimal("1.10")}).status_code == 200
    assert waits == [7.0, 0.5]

    session, waits = session_answering(503, 503, 503)
    with pytest.raises(TransientSyncError, match="HTTP 503 after 3 attempts"):
        session.request("PUT", "/x")
    assert waits == [0.5, 1.0]

    session, _ = session_answering((429, {"Retry-After": "3600"}))
    with pytest.raises(TransientSyncError, match="retry after 3600 s"):
        session.request("PUT", "/x")

    session, _ = session_answering(httpx.ReadTimeout("slow"))
    with pytest.raises(UncertainOutcome, match="may have been applied"):
        session.request("PUT", "/x")

    session, waits = session_answering(httpx.ConnectError("refused"), 200)
    assert session.request("GET", "/x").status_code == 200 and waits == [0.5]

    session, _ = session_answering(401, 200)
    assert session.request("GET", "/x").status_code == 200 and session.token.fetched == 2
    session, _ = session_answering(401, 401)
    with pytest.raises(CredentialsError, match="unauthorised after a fresh token"):
        session.request("GET", "/x")

    # A write answered 502 or 409 may have been applied: uncertain, looked up before a resend.
    session, _ = session_answering(502, 502, 502)
    with pytest.raises(UncertainOutcome, match="HTTP 502 after 3 attempts"):
        session.request("PUT", "/x")
    session, _ = session_answering(409)
    with pytest.raises(UncertainOutcome, match="in progress"):
        session.request("PUT", "/x")


def test_amounts_travel_as_exact_json_numbers():
    session, _ = session_answering(200)
    captured = []
    original = session.http.request

    def spy(method, url, **kwargs):
        if url.endswith("/x"):
            captured.append(kwargs["content"])
        return original(method, url, **kwargs)

    session.http.request = spy
    session.request("PUT", "/x", body={"Amount": Decimal("0.1000000000001"), "Quantity": Decimal("3")})
    assert captured == [b'{"Amount":0.1000000000001,"Quantity":3}']
    assert repr(Secret("hunter2")) == "Secret('***')" and "hunter2" not in f"{Secret('hunter2')}"
