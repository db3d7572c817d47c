"""The dbt unit tests (`unit_tests:` in models/*/_*.yml): the tier, coupon, wallet, percentage
and top-up arithmetic on fixed inputs. A billing build leaves them out (pipeline.BUILD_COMMAND):
they cannot fail on new data. They run here on DuckDB, in the PostgreSQL parity test on
PostgreSQL, and in the Spark parity test's build on Spark."""

from __future__ import annotations

import json

import yaml

from orchestration import pipeline
from orchestration.settings import PROJECT_DIR
from tests.conftest import run_all


def _defined_unit_tests() -> set[str]:
    names: set[str] = set()
    for path in (PROJECT_DIR / "models").rglob("*.yml"):
        for unit_test in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("unit_tests") or []:
            names.add(unit_test["name"])
    return names


def _last_results(settings) -> dict[str, str]:
    results = json.loads((settings.home / "dbt" / "target" / "run_results.json").read_text())["results"]
    return {result["unique_id"]: result["status"] for result in results}


def test_billing_build_leaves_unit_tests_out_and_every_unit_test_passes(small_home):
    run_all(small_home)  # dbt reads the unit tests' input relations for their column types
    built = _last_results(small_home)
    assert any(node.startswith("model.") for node in built) and any(node.startswith("test.") for node in built)
    assert not [node for node in built if node.startswith("unit_test.")]

    pipeline.run_dbt(small_home, ["test", "--select", "test_type:unit"])

    ran = _last_results(small_home)
    defined = _defined_unit_tests()
    assert len(defined) >= 17
    assert {node.split(".")[-1] for node in ran} == defined
    assert set(ran.values()) == {"pass"}
