"""Quality rules (UC-18): every check on real DataFrames through pandera, the score and the three outcomes,
rule files with mistakes, the reports, notifications (file, stdout, a webhook on a local HTTP server), and
the policy gate `mlops validate` applies to what quality decided."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from conftest import SEED, git, run_mlops

from mlops.analysis.quality import QualityResult, evaluate
from mlops.manifests.dataset_version import QualityStatus
from mlops.manifests.quality import QualityRulesSpec

NOW = dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC)


def run(frame: pd.DataFrame, *rules: dict[str, Any], threshold: float = 1.0, **refs: pd.Series[Any]) -> QualityResult:
    spec = QualityRulesSpec.model_validate({"threshold": threshold, "rules": list(rules)})
    references = {k.replace("__", "@", 1).replace("_dot_", "."): v for k, v in refs.items()}
    return evaluate(frame, spec, references, now=NOW)


def outcome(result: QualityResult) -> list[tuple[str, bool, int]]:
    return [(c.name, c.passed, c.failing) for c in result.checks]


FRAME = pd.DataFrame(
    {
        "id": ["A1", "A2", "A3", "A3", "B7", None],
        "amount": [10.0, 20.5, -3.0, 40.0, None, 7.0],
        "qty": [1, 2, 3, 4, 5, 6],
        "kind": ["x", "y", "x", "z", "x", "y"],
        "total": [10.0, 41.0, -9.0, 100.0, 5.0, 42.0],
        "day": ["2025-01-30", "2025-01-29", "2025-01-01", "2024-12-31", "2025-01-02", "2025-01-03"],
    }
)


def test_each_check_counts_the_failing_rows_and_shows_them() -> None:
    result = run(
        FRAME,
        {"column": "id", "notNull": True, "unique": True, "pattern": "A[0-9]"},
        {"column": "amount", "type": "float", "range": {"min": 0}, "maxNullRatio": 0.2},
        {"column": "qty", "type": "int", "range": {"min": 1, "max": 5}},
        {"column": "kind", "allowed": ["x", "y"]},
        {"name": "totals", "column": "total", "compare": {"op": ">=", "other": "amount"}},
        {"column": "day", "type": "datetime", "freshness": "2d"},
        {"rows": {"min": 3, "max": 5}},
    )
    assert outcome(result) == [
        ("id.notNull", False, 1),
        ("id.unique", False, 2),
        ("id.pattern", False, 1),
        ("amount.type", True, 0),
        ("amount.maxNullRatio", True, 0),
        ("amount.range", False, 1),
        ("qty.type", True, 0),
        ("qty.range", False, 1),
        ("kind.allowed", False, 1),
        ("totals.compare", False, 1),
        ("day.type", True, 0),
        ("day.freshness", True, 0),
        ("table.rows", False, 0),
    ]
    by_name = {c.name: c for c in result.checks}
    assert by_name["id.unique"].examples == ({"row": 3, "id": "A3"}, {"row": 4, "id": "A3"})
    assert by_name["id.unique"].message == "2 of 6 rows (33.33%) share 1 duplicated value"
    assert by_name["id.pattern"].examples == ({"row": 5, "id": "B7"},)
    assert by_name["amount.range"].examples == ({"row": 3, "amount": -3.0},)
    assert by_name["kind.allowed"].message == "1 of 6 rows (16.67%) hold other values ('z' x1)"
    assert by_name["totals.compare"].examples == ({"row": 3, "total": -9.0, "amount": -3.0},)
    assert by_name["table.rows"].message == "6 rows; at least 3 and at most 5 expected"
    assert by_name["day.freshness"].message == "newest day is 2025-01-30T00:00:00+00:00, 1.5 days old (at most 2d)"
    assert result.status is QualityStatus.FAILED
    assert result.score == round(5 / 13, 4)


def test_types_flag_the_rows_that_do_not_read() -> None:
    frame = pd.DataFrame(
        {"n": ["1", "2", "2.5", "x", None], "d": ["2025-01-01", "2025-13-01", None, "x", "2025-02-01"]}
    )
    result = run(
        frame,
        {"column": "n", "type": "int"},
        {"column": "d", "type": "datetime"},
        {"column": "n", "name": "b", "type": "bool"},
    )
    assert outcome(result) == [("n.type", False, 2), ("d.type", False, 2), ("b.type", False, 4)]
    assert [e["n"] for e in result.checks[0].examples] == ["2.5", "x"]
    assert [e["d"] for e in result.checks[1].examples] == ["2025-13-01", "x"]


def test_null_ratio_and_missing_column() -> None:
    frame = pd.DataFrame({"a": [1.0, None, None, 4.0]})
    result = run(frame, {"column": "a", "maxNullRatio": 0.25}, {"column": "b", "notNull": True})
    assert outcome(result) == [("a.maxNullRatio", False, 2), ("b.notNull", False, 0)]
    assert result.checks[0].message == "2 of 4 rows (50.00%) have no a; at most 25.00% may"
    assert result.checks[1].message == "column 'b' is missing (columns: a)"


def test_cross_table_existence() -> None:
    orders = pd.DataFrame({"customer_id": ["C1", "C2", "C9", "C9", None]})
    known = pd.Series(["C1", "C2", "C3"])
    result = run(
        orders,
        {"column": "customer_id", "existsIn": {"dataset": "customers@1", "column": "customer_id"}},
        customers__1_dot_customer_id=known,
    )
    assert outcome(result) == [("customer_id.existsIn", False, 2)]
    check = result.checks[0]
    assert check.message == "2 of 5 rows (40.00%) have a customer_id that customers@1 column customer_id does not hold"
    assert check.examples == ({"row": 3, "customer_id": "C9"}, {"row": 4, "customer_id": "C9"})
    unread = run(orders, {"column": "customer_id", "existsIn": {"dataset": "dataset://other@2", "column": "id"}})
    assert unread.checks[0].message == "other@2 column id could not be read" and not unread.checks[0].passed


def test_score_weights_threshold_and_critical() -> None:
    frame = pd.DataFrame({"a": [1, 2, 2], "b": [1, None, 3]})
    weighted = [{"column": "a", "unique": True, "weight": 1}, {"column": "b", "notNull": True, "weight": 3}]
    # a.unique fails (weight 1), b.notNull fails (weight 3): nothing passes
    assert run(frame, *weighted).score == 0.0
    fixed = frame.assign(b=[1, 2, 3])
    result = run(fixed, *weighted, threshold=0.7)
    assert (result.score, result.status) == (0.75, QualityStatus.VALIDATED)
    assert run(fixed, *weighted, threshold=0.8).status is QualityStatus.FAILED
    critical = [{"column": "a", "unique": True, "weight": 1, "severity": "critical"}, weighted[1]]
    result = run(fixed, *critical, threshold=0.1)
    assert (result.score, result.status) == (0.75, QualityStatus.QUARANTINED)
    assert [c.name for c in result.critical_failures] == ["a.unique"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"column": "a"}, "rule on column 'a' has no check"),
        ({"unique": True}, "unique need a column"),
        ({"column": "a", "range": {}}, "give min, max or both"),
        ({"column": "a", "range": {"min": 5, "max": 1}}, "min 5 is above max 1"),
        ({"column": "a", "pattern": "("}, "not a valid regular expression"),
        ({"column": "a", "notNull": True, "maxNullRatio": 0.1}, "use notNull or maxNullRatio, not both"),
        ({"column": "a", "existsIn": {"dataset": "customers", "column": "id"}}, "invalid dataset version"),
        ({"column": "a", "freshness": "2 days"}, "String should match pattern"),
    ],
)
def test_rule_mistakes_are_refused(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        QualityRulesSpec.model_validate({"rules": [rule]})


def test_a_rules_file_with_a_typo_is_one_line_with_its_position(example_repo: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "apiVersion: mlops/v1\nkind: QualityRules\nmetadata: {name: customers}\nspec:\n  rules:\n"
        "    - column: age\n      uniqe: true\n",
        encoding="utf-8",
    )
    result = run_mlops("data", "validate", "customers@1", "--rules", str(rules), "--repo", str(example_repo))
    assert result.code == 1
    assert result.err.splitlines() == [
        f"error: {rules}:7:7: spec.rules[0].uniqe: unknown field 'uniqe' (did you mean 'unique'?)"
    ]
    assert git(example_repo, "status", "--porcelain") == ""


def test_checked_in_rules_hold_for_the_example_version(example_repo: Path) -> None:
    result = run_mlops("data", "validate", "customers@1", "--repo", str(example_repo), "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out.split("\n}\n")[0] + "\n}")
    assert report["status"] == "validated" and report["score"] == 1.0 and len(report["checks"]) == 22
    assert [c["name"] for c in report["columns"]][:3] == ["customer_id", "signup_date", "plan"]
    quality = yaml.safe_load((example_repo / "registry/datasets/customers/versions/1.yaml").read_text())["spec"][
        "quality"
    ]
    assert quality["rules"] == "registry/datasets/customers/quality.yaml" and quality["threshold"] == 0.95
    assert git(example_repo, "log", "-1", "--format=%s") == "Validate customers@1: validated, score 1.00"


def test_reports_in_markdown_and_html_with_charts(example_repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    text = (SEED / "customers-v1.csv").read_text().replace(",north,", ",arctic,", 2).replace(",basic,", ",gold,", 1)
    (bad / "customers.csv").write_text(text)
    rules = example_repo / "registry/datasets/customers/quality.yaml"
    md = run_mlops(
        "data", "validate", str(bad), "--rules", str(rules), "--format", "markdown", "--repo", str(example_repo)
    )
    assert md.code == 1
    assert md.out.splitlines()[0] == f"### ❌ Data quality: `{bad}` is **failed**"
    assert (
        "| `region.allowed` | error | **FAIL** | 2 | 2 of 2,000 rows (0.10%) hold other values ('arctic' x2) |"
        in md.out
    )
    html_file = tmp_path / "report.html"
    result = run_mlops(
        "data",
        "validate",
        str(bad),
        "--rules",
        str(rules),
        "--format",
        "html",
        "--output",
        str(html_file),
        "--repo",
        str(example_repo),
    )
    assert result.code == 1
    assert result.out.splitlines()[0] == f"{bad}: failed, score 0.93; report written to {html_file}"
    page = html_file.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 9  # every column but the id is drawn
    assert "2,000 distinct values (an identifier?): not drawn" in page
    assert '<div class="column failing"><strong>region</strong>' in page


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(_Hook.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    _Hook.status = 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/data"
    finally:
        server.shutdown()
        server.server_close()


def _quarantine_setup(repo: Path, tmp_path: Path, url: str) -> tuple[Path, Path]:
    rules = repo / "registry/datasets/customers/quality.yaml"
    text = rules.read_text().replace(
        "    - type: stdout\n",
        f"    - type: stdout\n    - type: webhook\n      url: {url}\n      on: [validated, failed, quarantined]\n",
    )
    rules.write_text(text)
    git(repo, "commit", "-qam", "notify a webhook")
    folder = tmp_path / "v"
    folder.mkdir()
    broken = (SEED / "customers-v1.csv").read_text().replace("C00002,", "C00001,", 1)
    (folder / "customers.csv").write_text(broken)
    return folder, rules


def test_critical_failure_quarantines_and_notifies_a_webhook(example_repo: Path, tmp_path: Path, webhook: str) -> None:
    folder, _ = _quarantine_setup(example_repo, tmp_path, webhook)
    result = run_mlops("data", "snapshot", str(folder), "--name", "customers", "--repo", str(example_repo))
    assert result.code == 1
    assert [n["subject"] for n in _Hook.received] == ["customers@2"]
    sent = _Hook.received[0]
    assert sent["status"] == "quarantined" and sent["event"] == "dataset.quality"
    assert sent["uri"] == "dataset://customers@2" and sent["commit"] == git(example_repo, "rev-parse", "HEAD")
    assert sent["failed"] == [{"check": "customer_id.unique", "rows": 2, "severity": "critical"}]
    assert (
        "notify: dataset customers@2 is quarantined: score 0.90 (threshold 0.95); critical: customer_id.unique (2 rows)"
        in result.out
    )


def test_a_webhook_that_fails_is_a_warning_not_a_lost_version(example_repo: Path, tmp_path: Path, webhook: str) -> None:
    folder, _ = _quarantine_setup(example_repo, tmp_path, webhook)
    _Hook.status = 404
    result = run_mlops("data", "snapshot", str(folder), "--name", "customers", "--repo", str(example_repo))
    assert result.code == 1
    assert (example_repo / "registry/datasets/customers/versions/2.yaml").is_file()
    assert (
        f"warning: notification to {webhook} failed: notifying {webhook} failed: the webhook answered 404 Not Found"
        in result.err
    )
    assert len(_Hook.received) == 1  # a 4xx is not retried


def test_policy_gate_follows_the_score_threshold_and_status(example_repo: Path) -> None:
    version = example_repo / "registry/datasets/customers/versions/1.yaml"
    version.write_text(version.read_text().replace("score: 1.0", "score: 0.9"))
    result = run_mlops("validate", "--repo", str(example_repo))
    assert result.code == 1
    assert (
        "pipelines/train-churn/pipeline.yaml:16:9: spec.steps[0].inputs.data: dataset://customers@1 scored 0.90, "
        "below the quality threshold 0.95; a pipeline cannot read it: point at a validated version"
    ) in result.out.splitlines()
    assert (
        sum(
            "scored 0.90, below the quality threshold 0.95; it cannot be deployed beyond development" in line
            for line in result.out.splitlines()
        )
        == 4
    )
    version.write_text(
        version.read_text().replace("score: 0.9", "score: 1.0").replace("status: validated", "status: unvalidated")
    )
    result = run_mlops("validate", "--repo", str(example_repo))
    assert result.code == 0, result.out
    assert (
        "pipelines/train-churn/pipeline.yaml:16:9: warning: spec.steps[0].inputs.data: dataset://customers@1 has not "
        "been checked against its quality rules; run `mlops data validate customers@1`"
    ) in result.out.splitlines()


def test_data_list_and_show(example_repo: Path) -> None:
    result = run_mlops("data", "list", "--repo", str(example_repo))
    assert result.out.splitlines() == [
        "DATASET    VERSIONS  LATEST  ROWS   FILES  SIZE       QUALITY         RULES           OWNER",
        "customers  1         @1      2,000  1      105.7 KiB  validated 1.00  threshold 0.95  data-eng@example.com",
    ]
    shown = run_mlops("data", "show", "customers@1", "--repo", str(example_repo)).out.splitlines()
    assert shown[0] == "customers@1  (dataset://customers@1)"
    assert shown[-1] == (
        "  used by: model churn@1, model churn@2, model churn@3, model ltv@1, model ltv@2, pipeline train-churn"
    )
    as_json = json.loads(run_mlops("data", "show", "customers@1", "--format", "json", "--repo", str(example_repo)).out)
    assert as_json["uri"] == "dataset://customers@1" and as_json["spec"]["rows"] == 2000
    assert (
        run_mlops("data", "list", "--tag", "team=x", "--repo", str(example_repo)).out.strip()
        == "no datasets registered"
    )
    missing = run_mlops("data", "show", "orders", "--repo", str(example_repo))
    assert (
        missing.code == 2 and missing.err.strip() == "error: no dataset 'orders' in the registry (datasets: customers)"
    )
