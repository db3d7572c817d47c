"""Filters and pricing groups, by hand (tests/fixtures/filters_groups).

input_tokens is standard at 0.000001 by default, with filters: model=large at 0.00001
("Large model tokens"), model=large + tier=batch at 0.000005 (two keys: more specific, so it
wins for large batch events), model in (small, embed) at 0.000002; and grouped by region.

| event | model, tier, region | price bucket | line |
|---|---|---|---|
| f1 | large, realtime, eu | large | Large model tokens · region=eu: 1,000,000 x 0.00001 = 10.00 |
| f6 | large, realtime, - | large | Large model tokens · region=: 400,000 x 0.00001 = 4.00 |
| f2 | large, batch, eu | large + batch | Input tokens (large, batch) · region=eu: 2,000,000 x 0.000005 = 10.00 |
| f3, f4 | small / embed, us | small, embed | Input tokens (small, embed) · region=us: 3,500,000 x 0.000002 = 7.00 |
| f5 | tiny, eu | default | Input tokens · region=eu: 600,000 x 0.000001 = 0.60 |

Total 31.60: every event on exactly one line.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from orchestration import pipeline
from tests.conftest import FIXTURES, catalog_error_after_edit

CASE = FIXTURES / "filters_groups"


def test_each_event_is_priced_by_its_most_specific_filter_and_group():
    invoices = pipeline.simulate(CASE / "catalog", [CASE / "events.jsonl"], as_of=datetime(2026, 11, 15)).invoices
    october = next(i for i in invoices if i["issuing_date"] == "2026-11-01")
    lines = {line["description"]: (line["quantity"], line["amount"], line["event_count"]) for line in october["lines"]}
    assert lines == {
        "Large model tokens · region=eu": ("1000000", "10.00", 1),
        "Large model tokens · region=": ("400000", "4.00", 1),
        "Input tokens (large, batch) · region=eu": ("2000000", "10.00", 1),
        "Input tokens (small, embed) · region=us": ("3500000", "7.00", 2),
        "Input tokens · region=eu": ("600000", "0.60", 1),
    }
    assert october["total_amount"] == "31.60"
    assert sum(line["event_count"] for line in october["lines"]) == 6


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("values: {model: [small, embed]}", "values: {colour: [red]}",
         "charges[0] > filters[2] > values > colour: metric 'input_tokens' declares no filter 'colour'"),
        ("values: {model: [small, embed]}", "values: {model: [small, huge]}",
         "charges[0] > filters[2] > values > model: ['huge'] not among the metric's values"),
        ("values: {model: [small, embed]}", "values: {model: [large]}",
         "charges[0] > filters[2] > values: the same values as an earlier filter"),
        ('properties: {amount: "0.000002"}', 'properties: {amount: 0.2}',
         "charges[0] > filters[2] > properties > amount: 0.2 is not a decimal string"),
        ("pricing_group_keys: [region]", "pricing_group_keys: [a, b, c, d]",
         "charges[0] > pricing_group_keys: at most 3 distinct keys"),
    ],
)
def test_invalid_filters_name_the_field(tmp_path, old, new, expected):
    error = catalog_error_after_edit(CASE / "catalog", tmp_path, old, new)
    assert expected in str(error), str(error)
