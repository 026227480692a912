"""The model server, the router and the prediction log as plain Python (what Serve runs, without Serve)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mlops.appliers.router import Router, agree
from mlops.appliers.server import ModelServer
from mlops.appliers.state import EnvironmentState
from mlops.stores.predictions import BackgroundWriter, PredictionRecord, SQLitePredictionLog, open_prediction_log

CHURN_3 = "sha256:d7dabec5b366ac9015289256d35d3284e79205ef4a6fd722277cf98220f56e37"
LTV_2 = "sha256:cba27abff9d579e66fd229c21b20789ea45603e547a681e6561981011e2575d4"
SIGNATURE = {"inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 4]}], "example": [[59.9, 12, 1, 34]]}


def server_args(repo: Path, **changes: Any) -> dict[str, Any]:
    args = {
        "environment": "development", "deployment": "churn", "model": "churn", "version": 3, "digest": CHURN_3,
        "format": "onnx", "task": "classification", "signature": SIGNATURE, "trusted_skops_types": [],
        "store": str(repo / ".mlops" / "store"), "cache_dir": str(repo / ".mlops" / "serve-cache"),
        "predictions": str(repo / ".mlops" / "predictions.db"), "commit": "abc123",
    }
    args.update(changes)
    return args


def blob(repo: Path, digest: str) -> Path:
    return repo / ".mlops" / "store" / "sha256" / digest[7:9] / digest[9:]


def test_model_server_loads_verifies_and_answers(example_repo: Path) -> None:
    server = ModelServer(server_args(example_repo))
    health = server.health()
    assert health["healthy"] and health["loaded"] and health["digest_verified"] and health["canary"]
    assert health["canary_output"] == [0]
    server.check_health()
    status, payload = asyncio.run(server.predict(json.dumps({"inputs": [[59.9, 12, 1, 34]]}).encode(), "p1"))
    assert status == 200
    body = json.loads(payload)
    assert body == {"id": "p1", "model": "churn", "version": 3, "predictions": [0], "probabilities": [0.129047]}
    assert server.score(b"not json", "p2")[0] == 400
    assert server.score(b'{"rows": []}', "p3") == (400, {"error": 'expected a JSON object {"inputs": [[...], ...]}'})
    assert server.score(b'{"inputs": [[1, 2]]}', "p4") == (
        400, {"error": "churn@3: takes 4 feature columns, was given 2"})
    assert server.score(b'{"inputs": [["a", 2, 3, 4]]}', "p5")[0] == 400
    assert server._writer is not None
    server._writer.flush()
    log = SQLitePredictionLog(example_repo / ".mlops" / "predictions.db")
    (record,) = log.query()
    assert (record.id, record.environment, record.model, record.version, record.commit) == (
        "p1", "development", "churn", 3, "abc123")
    assert json.loads(record.inputs) == {"inputs": [[59.9, 12, 1, 34]]} and record.latency_ms >= 0

    regressor = ModelServer(server_args(example_repo, deployment="ltv", model="ltv", version=2, digest=LTV_2,
                                        format="skops", task="regression",
                                        trusted_skops_types=["sklearn.tree._tree.Tree"], predictions=None))
    assert regressor.health()["healthy"], regressor.health()
    status, body = regressor.score(b'{"inputs": [[59.9, 12, 1, 34]]}', "q")
    assert status == 200 and isinstance(body["predictions"][0], float) and "probabilities" not in body


def test_a_damaged_artifact_or_a_bad_example_fails_the_health_check(example_repo: Path) -> None:
    cached = ModelServer(server_args(example_repo, predictions=None))
    assert cached.health()["healthy"]
    # The cached copy is damaged: hashed again at start, fetched again from the store.
    cache_file = example_repo / ".mlops" / "serve-cache" / CHURN_3[7:9] / CHURN_3[9:]
    cache_file.chmod(0o644)
    cache_file.write_bytes(b"garbage")
    assert ModelServer(server_args(example_repo, predictions=None)).health()["healthy"]

    # The store's copy is damaged and nothing is cached: not loaded, and the reason says why.
    cache_file.unlink()
    stored = blob(example_repo, CHURN_3)
    stored.chmod(0o644)
    stored.write_bytes(stored.read_bytes()[:-1] + b"!")
    broken = ModelServer(server_args(example_repo, predictions=None))
    report = broken.health()
    assert not report["healthy"] and not report["loaded"] and not report["digest_verified"]
    assert "the blob in" in report["error"] and "is damaged" in report["error"]
    assert broken.score(b'{"inputs": [[1, 2, 3, 4]]}', "x")[0] == 503

    fine = ModelServer(server_args(example_repo, predictions=None, digest=LTV_2, format="skops", task="regression",
                                   trusted_skops_types=["sklearn.tree._tree.Tree"],
                                   signature={**SIGNATURE, "example": [[1.0, 2.0, 3.0]]}))
    report = fine.health()
    assert report["loaded"] and report["digest_verified"] and not report["canary"] and not report["healthy"]
    assert report["error"].startswith("canary prediction on the signature's example failed:")
    try:
        fine.check_health()
    except RuntimeError as exc:
        assert str(exc).startswith("mlops health check failed: canary prediction")
    else:
        raise AssertionError("check_health passed a model whose canary fails")


def test_router_draws_versions_by_weight_and_counts_for_the_gates() -> None:
    router = Router({"environment": "development", "deployment": "churn"})
    router.reconfigure({"model": "churn", "routes": [
        {"app": "development.churn.v3", "version": 3, "weight": 90},
        {"app": "development.churn.v4", "version": 4, "weight": 10}]})
    router._random = random.Random(0)
    drawn = Counter(router._choose().version for _ in range(20_000))  # type: ignore[union-attr]
    assert 0.08 < drawn[4] / 20_000 < 0.12
    router.reconfigure({"model": "churn", "routes": [{"app": "a", "version": 3, "weight": 0},
                                                      {"app": "b", "version": 4, "weight": 100}]})
    assert {router._choose().version for _ in range(200)} == {4}  # type: ignore[union-attr]

    answers = {"development.churn.v3": (200, b'{"predictions": [1]}'), "development.churn.v4": (500, b"{}")}

    async def fake_call(route: Any, body: bytes, prediction_id: str, log: bool = True) -> tuple[int, bytes]:
        return answers[route.app]

    router._call = fake_call  # type: ignore[method-assign]
    router.reconfigure({"model": "churn", "routes": [
        {"app": "development.churn.v3", "version": 3, "weight": 50},
        {"app": "development.churn.v4", "version": 4, "weight": 50}]})

    async def traffic() -> list[tuple[int, bytes, dict[str, str]]]:
        return [await router.handle(b"{}") for _ in range(400)]

    results = asyncio.run(traffic())
    assert {r[2]["X-Model-Version"] for r in results} == {"churn@3", "churn@4"}
    assert all(len(r[2]["X-Prediction-Id"]) == 32 for r in results)
    stats = router.stats(reset=True)["versions"]
    assert stats["4"]["errors"] == stats["4"]["requests"] > 100 and stats["4"]["error_rate"] == 1.0
    assert stats["3"]["errors"] == 0 and stats["3"]["p99_ms"] is not None
    assert router.stats()["versions"]["3"]["requests"] == 0

    router.reconfigure({"model": "churn", "routes": []})
    status, body, _ = asyncio.run(router.handle(b"{}"))
    assert status == 503 and b"no version receives traffic" in body


def test_published_weights_wake_the_routers_waiting_for_them() -> None:
    state = EnvironmentState("development")
    first = {"model": "churn", "routes": [{"app": "development.churn.v4", "version": 4, "weight": 100}]}
    back = {"model": "churn", "routes": [{"app": "development.churn.v3", "version": 3, "weight": 100}]}

    async def scenario() -> list[dict[str, Any]]:
        subscribed = await state.watch_routes("development.churn", None, 5)
        assert subscribed == {"serial": 0, "config": None}  # a new replica starts from Serve's config
        serial = state.publish_routes({"development.churn": first})
        assert await state.watch_routes("development.churn", None, 5) == {"serial": serial, "config": None}
        waiting = asyncio.ensure_future(state.watch_routes("development.churn", serial, 30))
        other = asyncio.ensure_future(state.watch_routes("development.ltv", 0, 0.2))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        state.publish_routes({"development.churn": back})
        return [await waiting, await other, await state.watch_routes("development.churn", serial + 1, 0.1)]

    woken, untouched, timed_out = asyncio.run(scenario())
    assert woken == {"serial": 2, "config": back}
    assert untouched == {"serial": 0, "config": None}  # another router's weights did not change
    assert timed_out == {"serial": 2, "config": None}
    assert state.snapshot()["routes"] == {"development.churn": {"serial": 2, "config": back}}


def test_agreement_compares_labels_exactly_and_values_closely() -> None:
    assert agree({"predictions": [1, 0]}, {"predictions": [1, 0]})
    assert not agree({"predictions": [1, 0]}, {"predictions": [1, 1]})
    assert agree({"predictions": [1000.0]}, {"predictions": [1000.0000001]})
    assert not agree({"predictions": [1000.0]}, {"predictions": [1001.0]})
    assert not agree({"predictions": [1]}, {"error": "x"})


def test_prediction_log_writes_in_the_background_and_never_blocks(tmp_path: Path) -> None:
    log = open_prediction_log(f"sqlite:///{tmp_path / 'p.db'}")
    writer = BackgroundWriter(log, max_queue=10, interval=0.05)
    for i in range(25):  # more than the queue holds: the overflow is dropped and counted, never waited for
        writer.submit(PredictionRecord(f"id{i}", time.time(), "dev", "churn", "churn", 3, "c", "{}", "{}", 1.0))
    writer.close()
    stats = writer.stats()
    assert stats["written"] + stats["dropped"] == 25 and stats["written"] >= 10
    reopened = SQLitePredictionLog(tmp_path / "p.db")
    assert reopened.count(environment="dev") == stats["written"]
    assert reopened.count(model="ltv") == 0
    mode = reopened._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
