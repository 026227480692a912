"""UC-01, UC-02, UC-03, UC-09 end to end, as a team would work: every step a commit, CI's gate in between.

init a repository, train two small real models (one saved with skops, one exported to ONNX), register both,
compare them, promote through development and staging to production with the policy satisfied, watch the gate
refuse a worse version, and roll back. Soak time is real git history: commits are dated in the past with
GIT_COMMITTER_DATE, exactly as they would be had the team waited.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from conftest import Result, git, run_mlops
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.tree import DecisionTreeClassifier

FEATURES = ["tenure", "spend", "tickets", "age"]

PRODUCTION_POLICY = """\
apiVersion: mlops/v1
kind: PromotionPolicy
metadata:
  name: promotion-production
spec:
  environment: production
  previousEnvironment: staging
  soak: 24h
  metrics:
    - {metric: auc, min: 0.7, task: classification}
  comparison: {metric: auc, test: non-inferiority, margin: 0.01}
  approvals:
    count: 1
    roles: [ml-lead]
"""

ACCESS_POLICY = """\
apiVersion: mlops/v1
kind: AccessPolicy
metadata:
  name: access
spec:
  roles:
    - name: ml-engineer
      members: [author@example.com]
    - name: ml-lead
      members: [lead@example.com]
  rules:
    - paths: ["**"]
      roles: [ml-engineer, ml-lead]
"""


def data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.8 * x[:, 2] * x[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["churned"] = y
    return frame


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    repo, work = tmp_path / "ml-state", tmp_path / "work"
    work.mkdir()
    train, evaluation = data(3000, 1), data(4000, 2)
    evaluation.to_csv(work / "eval.csv", index=False)
    x, y = train[FEATURES].to_numpy(np.float32), train["churned"].to_numpy()
    good = GradientBoostingClassifier(n_estimators=60, max_depth=3, random_state=0).fit(x, y)
    (work / "churn-gbm.onnx").write_bytes(
        to_onnx(good, x[:1], options={id(good): {"zipmap": False}}, target_opset=17).SerializeToString()
    )
    baseline = LogisticRegression(max_iter=500).fit(x, y)
    sio.dump(baseline, work / "churn-logreg.skops")
    weak = DecisionTreeClassifier(max_depth=1, random_state=0).fit(x, y)  # a stump: one split, much less signal
    weak_onnx = to_onnx(weak, x[:1], options={id(weak): {"zipmap": False}}, target_opset=17)
    (work / "churn-weak.onnx").write_bytes(weak_onnx.SerializeToString())
    held_out = data(1000, 3)
    for name, model, columns in (
        ("gbm", good, slice(None)),
        ("logreg", baseline, slice(None)),
        ("weak", weak, slice(None)),
    ):
        scores = model.predict_proba(held_out[FEATURES].to_numpy(np.float32)[:, columns])[:, 1]
        auc = roc_auc_score(held_out["churned"], scores)
        (work / f"metrics-{name}.json").write_text(json.dumps({"auc": round(float(auc), 4)}))
    monkeypatch.chdir(work)
    yield repo, work


def ok(*args: str) -> Result:
    result = run_mlops(*args)
    assert result.code == 0, f"mlops {' '.join(args)} -> {result.code}\n{result.out}{result.err}"
    return result


def at(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S+0000")
    monkeypatch.setenv("GIT_COMMITTER_DATE", stamp)
    monkeypatch.setenv("GIT_AUTHOR_DATE", stamp)


def test_register_compare_promote_refuse_and_roll_back(
    team: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, _ = team
    r = ("--repo", str(repo))
    now = dt.datetime.now(dt.UTC)
    at(monkeypatch, now - dt.timedelta(days=5))
    ok("init", str(repo))
    (repo / "policies" / "promotion-production.yaml").write_text(PRODUCTION_POLICY)
    (repo / "policies" / "access.yaml").write_text(ACCESS_POLICY)
    git(repo, "commit", "-qam", "Production gate: soak, AUC floor, non-inferiority, one ml-lead approval")

    # UC-01: register two real models; the first creates the model.
    ok(
        "model",
        "register",
        "churn-logreg.skops",
        "--name",
        "churn",
        "--task",
        "classification",
        "--description",
        "logistic regression baseline",
        "--metrics",
        "metrics-logreg.json",
        "--tag",
        f"features={','.join(FEATURES)}",
        *r,
    )
    ok(
        "model",
        "register",
        "churn-gbm.onnx",
        "--name",
        "churn",
        "--description",
        "gradient boosting",
        "--metrics",
        "metrics-gbm.json",
        *r,
    )
    shown = ok("model", "show", "churn@2", *r).out
    assert "(onnx, " in shown and "gradient boosting" in shown
    assert "input:       X float32 [-1, 4]" in shown  # the signature was read from the ONNX graph

    # UC-03: compare on held-out rows and record the evidence in churn@2's manifest.
    features = ",".join(FEATURES)
    compared = ok(
        "model",
        "compare",
        "churn@1",
        "churn@2",
        "--data",
        "eval.csv",
        "--label",
        "churned",
        "--features",
        features,
        "--bootstrap",
        "300",
        "--record",
        *r,
    ).out
    assert "recorded 4 evaluation(s) in churn@2" in compared

    # UC-02 through development and staging (no approvals needed there), days apart.
    at(monkeypatch, now - dt.timedelta(days=4))
    ok("promote", "churn@2", "--to", "development", *r)
    at(monkeypatch, now - dt.timedelta(days=3))
    staged = ok("promote", "churn@2", "--to", "staging", *r).out
    assert "[x] served in development first" in staged

    # Production: the local gate passes; the pull request still needs an ml-lead's approval.
    at(monkeypatch, now - dt.timedelta(days=1))
    ok("promote", "churn@2", "--to", "production", "--branch", "promote-churn-2", "--reason", "beats v1", *r)
    unapproved = run_mlops("validate", "--base", "main", *r)
    assert unapproved.code == 1, unapproved.out
    assert "1 approval from ml-lead not met (promotion-production): approved by nobody yet" in unapproved.out
    git(repo, "commit", "-q", "--allow-empty", "-m", "Approve\n\nApproved-by: Lee Lead <lead@example.com>")
    approved = run_mlops("validate", "--base", "main", *r)
    assert approved.code == 0, approved.out
    assert "met 1 approval from ml-lead: approved by lead@example.com" in approved.out
    assert "met soak 24h in staging" in approved.out
    assert "promote churn 2" not in approved.out and "deploy churn@2 to production as churn" in approved.out
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "promote-churn-2", "-m", "Merge promote-churn-2")

    # A worse version: registered, staged long enough, compared... and refused by the production gate.
    at(monkeypatch, now - dt.timedelta(hours=50))
    ok(
        "model",
        "register",
        "churn-weak.onnx",
        "--name",
        "churn",
        "--description",
        "two features only",
        "--metrics",
        "metrics-weak.json",
        *r,
    )
    ok("promote", "churn@3", "--to", "development", *r)
    ok("promote", "churn@3", "--to", "staging", *r)
    monkeypatch.delenv("GIT_COMMITTER_DATE")
    monkeypatch.delenv("GIT_AUTHOR_DATE")
    weak = ("churn@2", "churn@3", "--data", "eval.csv", "--label", "churned", "--bootstrap", "300", "--record")
    ok("model", "compare", *weak, "--features", features, *r)
    refused = run_mlops("promote", "churn@3", "--to", "production", *r)
    assert refused.code == 1
    assert refused.err.startswith("error: promotion of churn@3 to production refused by promotion-production")
    assert "unmet: non-inferiority on auc vs current: difference -" in refused.err
    # Editing the pointer by hand does not get past CI either.
    production = repo / "environments" / "production.yaml"
    production.write_text(production.read_text().replace("version: 2", "version: 3"))
    by_hand = run_mlops("validate", "--base", "HEAD", *r)
    assert by_hand.code == 1 and "non-inferiority on auc vs current not met" in by_hand.out
    git(repo, "checkout", "--", "environments/production.yaml")

    # UC-09: staging goes back to the version it served before, chosen from git history.
    offered = ok("rollback", "--env", "staging", "--list", *r).out
    assert offered.startswith("churn@2  served from ")
    ok("rollback", "--env", "staging", "--reason", "weak model in staging", *r)
    assert "version: 2" in (repo / "environments" / "staging.yaml").read_text()
    rolled = run_mlops("validate", "--base", "HEAD~1", *r)
    assert rolled.code == 0, rolled.out
    assert "gates do not apply" in rolled.out and "roll back churn 3 -> 2 in staging" in rolled.out

    # Every decision is a commit that says what it did.
    subjects = git(repo, "log", "--format=%s", "--first-parent", "main").splitlines()
    assert subjects == [
        "Roll back churn 3 -> 2 in staging",
        "Record evaluation of churn@3 against churn@2",
        "Promote churn@3 to staging (2 -> 3)",
        "Promote churn@3 to development (2 -> 3)",
        "Register churn@3",
        "Merge promote-churn-2",
        "Promote churn@2 to staging",
        "Promote churn@2 to development",
        "Record evaluation of churn@2 against churn@1",
        "Register churn@2",
        "Register churn@1",
        "Production gate: soak, AUC floor, non-inferiority, one ml-lead approval",
        "Initialize mlops state repository",
    ]
    assert ok("validate", *r).lines[-1].startswith("ok: ")
