"""`mlops validate` on a generated repository of 10,000 manifests, against the libyaml parse floor.

Run from the repository root with the project's virtualenv::

    .venv/bin/python benchmarks/validate_10k.py [--manifests 10000] [--repeat 3] [--keep DIR]

It generates a realistic, valid state repository in a temporary folder (models with many
versions, a dataset, environments, the policies; every artifact digest present in the
local store) and measures, each run ``--repeat`` times (median reported):

(c) the floor: in this process, read every manifest and ``yaml.load(text, Loader=yaml.CSafeLoader)``;
(a) cold: ``mlops validate --repo DIR`` as a subprocess of the real CLI, with no ``.mlops/cache``;
(b) warm, one file changed: the same after editing one version file's description;
(d) warm, no change.

Goals: ``cold / floor <= 2.0`` and ``warm one-file < 0.5 s``. Each validate run must exit 0
and report the generated number of manifests, or the benchmark stops with an error.
All CLI timings include process start-up, exactly as a user or CI job pays it: Python keeps its
bytecode cache as it does by default (a ``PYTHONDONTWRITEBYTECODE`` set in the calling shell is not
passed on: with it, every run would compile mlops' own modules again, which no user's second run pays);
the one untimed run before the warm measurements fills that cache like a user's first run does.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

COLD_GOAL = 2.0  # cold validate / parse floor
WARM_GOAL = 0.5  # seconds for a re-validation after one file changed
FIXED = 12  # manifests that do not scale: 5 policies, 3 environments, dataset + version, project, pipeline
MAX_MODELS = 100
PIPELINE = "train"
DATASET = "customers"


def say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------
# The generated repository


@dataclass
class Generated:
    root: Path
    paths: list[str]  # every manifest, relative to root
    digests: list[str]  # every artifact digest the manifests promise
    edit_path: str  # the version file (b) edits
    edit_description: str


def _plan(total: int) -> list[int]:
    """Versions per model: ~99 files per model (model.yaml + versions), at most 100 models."""
    if total < FIXED + 2:
        raise SystemExit(f"--manifests must be at least {FIXED + 2}")
    models = max(1, min(MAX_MODELS, (total - FIXED) // 99))
    versions = total - FIXED - models
    per, extra = divmod(versions, models)
    return [per + (1 if i < extra else 0) for i in range(models)]


def _model_name(i: int) -> str:
    return f"m-{i:03d}"


def _is_regression(i: int) -> bool:
    return i % 10 == 9


def _blob(name: str, version: int) -> bytes:
    return f"artifact of {name} version {version}\n".encode()


def _model_yaml(i: int) -> str:
    name = _model_name(i)
    if _is_regression(i):
        return f"""\
# yaml-language-server: $schema=../../../schemas/Model.schema.json
apiVersion: mlops/v1
kind: Model
metadata:
  name: {name}
  labels:
    team: finance
  annotations:
    # High-tier models must link their model card (policies/risk.yaml).
    mlops.dev/model-card: registry/models/{name}/MODEL_CARD.md
spec:
  owner: finance-ml@example.com
  description: Expected lifetime value of a customer (variant {i}); used in credit decisions, hence high risk.
  task: regression
  flavor: sklearn
  riskTier: high
  signature:
    inputs:
      - {{name: features, dtype: float64, shape: [-1, 4]}}
    outputs:
      - {{name: prediction, dtype: float64, shape: [-1]}}
    example: [[59.9, 12, 1, 34]]
  dataClasses: [internal]
"""
    return f"""\
# yaml-language-server: $schema=../../../schemas/Model.schema.json
apiVersion: mlops/v1
kind: Model
metadata:
  name: {name}
  labels:
    team: growth
spec:
  owner: growth-ml@example.com
  description: Probability that a customer of segment {i} cancels within 90 days; drives retention offers.
  task: classification
  flavor: sklearn
  riskTier: medium
  signature:
    inputs:
      - {{name: features, dtype: float32, shape: [-1, 4]}}   # monthly_spend, tenure_months, support_tickets, age
    outputs:
      - {{name: label, dtype: int64, shape: [-1]}}
      - {{name: probabilities, dtype: float32, shape: [-1, 2]}}
    example: [[59.9, 12, 1, 34]]
  dataClasses: [internal]
"""


def _version_yaml(i: int, version: int, digest: str, size: int, description: str) -> str:
    name = _model_name(i)
    day = 1 + version % 28
    if _is_regression(i):
        r2 = 0.76 + (version % 20) / 100
        return f"""\
# yaml-language-server: $schema=../../../../schemas/ModelVersion.schema.json
apiVersion: mlops/v1
kind: ModelVersion
metadata:
  name: {name}
spec:
  version: {version}
  description: {description}
  artifact:
    digest: {digest}
    size: {size}
    format: skops
    filename: {name}-{version}.skops
  metrics:
    rmse: {700 - version % 100}.5
    mae: {480 - version % 100}.25
    r2: {r2:.4f}
  params:
    estimator: GradientBoostingRegressor
    n_estimators: {20 + version % 80}
    max_depth: {2 + version % 5}
    learning_rate: 0.1
    subsample: 1.0
    loss: squared_error
    random_state: {version}
  signature:
    inputs:
      - {{name: features, dtype: float64, shape: [-1, 4]}}
    outputs:
      - {{name: prediction, dtype: float64, shape: [-1]}}
    example: [[59.9, 12, 1, 34]]
  lineage:
    datasets: [dataset://{DATASET}@1]
    pipeline: {PIPELINE}
  createdBy: finance-ml@example.com
  createdAt: "2026-10-{day:02d}T16:30:00Z"
"""
    auc = 0.79 + (version % 17) / 100
    return f"""\
# yaml-language-server: $schema=../../../../schemas/ModelVersion.schema.json
apiVersion: mlops/v1
kind: ModelVersion
metadata:
  name: {name}
spec:
  version: {version}
  description: {description}
  artifact:
    digest: {digest}
    size: {size}
    format: onnx
    filename: {name}-{version}.onnx
  metrics:
    auc: {auc:.4f}
    accuracy: 0.{810 + version % 90}
    f1: 0.{4300 + version % 500}
    log_loss: 0.{4200 + version % 300}
  params:
    estimator: GradientBoostingClassifier
    n_estimators: {20 + version % 80}
    max_depth: {2 + version % 5}
    learning_rate: 0.1
    subsample: 1.0
    min_samples_leaf: 1
    loss: log_loss
    random_state: {version}
  signature:
    inputs:
      - {{name: features, dtype: float32, shape: [-1, 4]}}
    outputs:
      - {{name: label, dtype: int64, shape: [-1]}}
      - {{name: probabilities, dtype: float32, shape: [-1, 2]}}
    example: [[59.9, 12, 1, 34]]
  lineage:
    datasets: [dataset://{DATASET}@1]
    pipeline: {PIPELINE}
  createdBy: growth-ml@example.com
  createdAt: "2026-09-{day:02d}T09:12:00Z"
"""


_STEPS = """def prepare(data):
    return data, data


def train(train, max_depth):
    return b"model"


def evaluate(model, test):
    return {"auc": 0.8}
"""


def _environment_yaml(name: str, address: str, deployments: list[tuple[int, int]], blue_green: bool) -> str:
    lines = [
        "# yaml-language-server: $schema=../schemas/Environment.schema.json",
        "apiVersion: mlops/v1",
        "kind: Environment",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  description: The {name} cluster; generated by benchmarks/validate_10k.py.",
        "  cluster:",
        f"    address: {address}",
        "  deployments:",
    ]
    for i, version in deployments:
        model = _model_name(i)
        lines += [
            f"    - name: {model}",
            f"      model: {model}",
            f"      version: {version}",
            f"      replicas: {2 if blue_green else 1}",
            f"      routePrefix: /{model}",
        ]
        if blue_green:
            lines += [
                "      resources: {cpus: 1, memory: 1Gi}",
                "      strategy:",
                "        type: blue-green",
                "        steps:",
                "          - {weight: 10, pause: 5m, analysis: {maxErrorRate: 0.01, maxP99LatencyMs: 250}}",
                "          - {weight: 100}",
                "        gracePeriod: 15m",
            ]
    if name == "staging":
        lines += ["  pipelines:", f"    - name: {PIPELINE}"]
    return "\n".join(lines) + "\n"


_DATASET = """\
# yaml-language-server: $schema=../../../schemas/Dataset.schema.json
apiVersion: mlops/v1
kind: Dataset
metadata:
  name: customers
spec:
  owner: data-eng@example.com
  description: One row per customer with behaviour, plan and outcomes (churned, lifetime value).
  dataClass: internal
  containsPii: false
  source: Synthetic export generated by benchmarks/validate_10k.py
"""

_DATASET_VERSION = """\
# yaml-language-server: $schema=../../../../schemas/DatasetVersion.schema.json
apiVersion: mlops/v1
kind: DatasetVersion
metadata:
  name: customers
spec:
  version: 1
  description: Initial snapshot, 2,000 customers.
  fingerprint:
    algorithm: sha256-tree-v1
    digest: {fingerprint}
  size: {size}
  fileCount: 1
  files:
    - path: customers.csv
      digest: {digest}
      size: {size}
  format: csv
  rows: 2000
  columns:
    - {{name: customer_id, type: string, nullable: false}}
    - {{name: monthly_spend, type: float64}}
    - {{name: tenure_months, type: int64}}
    - {{name: churned, type: int64}}
  quality:
    status: validated
    score: 1.0
  createdBy: data-eng@example.com
  createdAt: "2026-08-30T07:00:00Z"
"""

_PROJECT = """\
# yaml-language-server: $schema=../../schemas/Project.schema.json
apiVersion: mlops/v1
kind: Project
metadata:
  name: retention
spec:
  description: Experiments on churn prediction and retention offers.
  members:
    - {user: lead@example.com, role: lead}
    - {user: growth-ml@example.com, role: member}
  allowedDatasets: [customers]
  budget: {cpuHours: 500, period: month}
  retentionDays: 365
  reviewRequired:
    dataClasses: [confidential, restricted]
    overBudgetShare: 0.25
"""

_PIPELINE = """\
# yaml-language-server: $schema=../../schemas/Pipeline.schema.json
apiVersion: mlops/v1
kind: Pipeline
metadata:
  name: train
spec:
  description: Split the customers snapshot, train a classifier, export it to ONNX and evaluate it.
  params:
    max_depth: 3
    n_estimators: 40
  schedule: "0 3 * * 1"   # Mondays 03:00 UTC
  steps:
    - name: prepare
      run: steps:prepare
      inputs:
        data: dataset://customers@1
      outputs:
        train: {type: table, checks: {rows: {min: 1000}, columns: [churned]}}
        test: {type: table, checks: {rows: {min: 200}}}
    - name: train
      run: steps:train
      inputs:
        train: steps.prepare.outputs.train
        max_depth: params.max_depth
        n_estimators: params.n_estimators
      outputs:
        model: {type: model, checks: {signature: true}}
      resources: {cpus: 1}
      retries: {max: 2, backoff: 5s}
      timeout: 10m
    - name: evaluate
      run: steps:evaluate
      inputs:
        model: steps.train.outputs.model
        test: steps.prepare.outputs.test
      outputs:
        metrics: {type: metrics, checks: {metrics: {auc: {min: 0.7}}}}
  registers:
    model: m-000
    output: steps.train.outputs.model
    metrics: steps.evaluate.outputs.metrics
"""

_POLICIES = {
    "access": """\
# yaml-language-server: $schema=../schemas/AccessPolicy.schema.json
apiVersion: mlops/v1
kind: AccessPolicy
metadata:
  name: access
spec:
  roles:
    - name: ml-engineer
      members: [growth-ml@example.com, finance-ml@example.com]
    - name: ml-lead
      members: [lead@example.com]
    - name: risk-officer
      members: [risk@example.com]
    - name: platform
      members: [platform@example.com]
  rules:
    - paths: ["registry/**", "pipelines/**"]
      roles: [ml-engineer, ml-lead]
    - paths: ["environments/development.yaml", "environments/staging.yaml"]
      roles: [ml-engineer, ml-lead, platform]
      approvals: 1
    - paths: ["environments/production.yaml"]
      roles: [ml-lead, platform]
      approvals: 2
    - paths: ["policies/**"]
      roles: [platform, risk-officer]
      approvals: 2
""",
    "artifacts": """\
# yaml-language-server: $schema=../schemas/ArtifactPolicy.schema.json
apiVersion: mlops/v1
kind: ArtifactPolicy
metadata:
  name: artifacts
spec:
  allowedFormats: [onnx, skops, mlflow, safetensors, npz]
  exceptions: []
""",
    "promotion-production": """\
# yaml-language-server: $schema=../schemas/PromotionPolicy.schema.json
apiVersion: mlops/v1
kind: PromotionPolicy
metadata:
  name: promotion-production
spec:
  environment: production
  previousEnvironment: staging
  soak: 24h
  metrics:
    - {metric: auc, min: 0.78, task: classification}
    - {metric: r2, min: 0.75, task: regression}
  comparison:
    metric: auc
    test: non-inferiority
    margin: 0.01
  maxRiskTier: high
  approvals:
    count: 2
    roles: [ml-lead, risk-officer]
    authorMayApprove: false
""",
    "promotion-staging": """\
# yaml-language-server: $schema=../schemas/PromotionPolicy.schema.json
apiVersion: mlops/v1
kind: PromotionPolicy
metadata:
  name: promotion-staging
spec:
  environment: staging
  previousEnvironment: development
  metrics:
    - {metric: auc, min: 0.75, task: classification}
    - {metric: r2, min: 0.7, task: regression}
  approvals:
    count: 1
    roles: [ml-engineer, ml-lead]
""",
    "risk": """\
# yaml-language-server: $schema=../schemas/RiskPolicy.schema.json
apiVersion: mlops/v1
kind: RiskPolicy
metadata:
  name: risk
spec:
  tiers:
    - tier: high
      requiredApprovals: 2
      requiredDocuments: [mlops.dev/model-card]
    - tier: critical
      maxEnvironment: staging
      requiredApprovals: 3
      requiredDocuments: [mlops.dev/model-card, mlops.dev/risk-assessment]
""",
}


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def generate(root: Path, total: int) -> Generated:
    """Write the repository and its artifacts; return what the measurements need."""
    from mlops.stores.artifacts import LocalArtifactStore

    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[tool.mlops]\nstore = ".mlops/store"\n', encoding="utf-8")
    (root / ".gitignore").write_text(".mlops/\n", encoding="utf-8")
    blobs: dict[str, bytes] = {}
    files: dict[str, str] = {}

    counts = _plan(total)
    for i, n_versions in enumerate(counts):
        name = _model_name(i)
        files[f"registry/models/{name}/model.yaml"] = _model_yaml(i)
        for version in range(1, n_versions + 1):
            blob = _blob(name, version)
            digest = _sha256(blob)
            blobs[digest] = blob
            description = f"Candidate {version} of {name}, retrained on the latest customers snapshot."
            files[f"registry/models/{name}/versions/{version}.yaml"] = _version_yaml(
                i, version, digest, len(blob), description
            )

    data = b"customer_id,monthly_spend,tenure_months,churned\nc-0001,59.9,12,0\n"
    blobs[_sha256(data)] = data
    files[f"registry/datasets/{DATASET}/dataset.yaml"] = _DATASET
    files[f"registry/datasets/{DATASET}/versions/1.yaml"] = _DATASET_VERSION.format(
        fingerprint=_sha256(b"tree:" + data), digest=_sha256(data), size=len(data)
    )
    files["registry/experiments/retention.yaml"] = _PROJECT
    files[f"pipelines/{PIPELINE}/pipeline.yaml"] = _PIPELINE
    files[f"pipelines/{PIPELINE}/steps.py"] = _STEPS
    for policy, text in _POLICIES.items():
        files[f"policies/{policy}.yaml"] = text

    deployed = list(range(min(20, len(counts))))
    latest = {i: counts[i] for i in deployed}
    files["environments/development.yaml"] = _environment_yaml(
        "development", "local", [(i, latest[i]) for i in deployed], False
    )
    files["environments/staging.yaml"] = _environment_yaml(
        "staging", "ray://ray-staging.internal:10001", [(i, max(1, latest[i] - 1)) for i in deployed], False
    )
    files["environments/production.yaml"] = _environment_yaml(
        "production", "ray://ray-prod.internal:10001", [(i, max(1, latest[i] - 2)) for i in deployed], True
    )
    assert sum(rel.endswith(".yaml") for rel in files) == total, (len(files), total)

    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    # Artifacts: laid out exactly as LocalArtifactStore keeps them (sha256/<2 hex>/<62 hex>), without the
    # per-blob fsync of put_file, which would make generation dominate on slow disks; checked through the store.
    store_root = root / ".mlops" / "store"
    for digest, blob in blobs.items():
        hexdigest = digest.removeprefix("sha256:")
        path = store_root / "sha256" / hexdigest[:2] / hexdigest[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    missing = LocalArtifactStore(store_root).missing(blobs)
    if missing:
        raise SystemExit(f"generated store layout does not match LocalArtifactStore: {len(missing)} digests missing")

    edit_model = len(counts) // 2
    edit_version = max(1, counts[edit_model] // 2)
    edit_path = f"registry/models/{_model_name(edit_model)}/versions/{edit_version}.yaml"
    edit_description = (
        f"Candidate {edit_version} of {_model_name(edit_model)}, retrained on the latest customers snapshot."
    )
    return Generated(root, sorted(files), sorted(blobs), edit_path, edit_description)


def edit_one(gen: Generated, round_: int) -> None:
    """Change one version file's description, as a pull request touching one manifest would."""
    path = gen.root / gen.edit_path
    text = path.read_text(encoding="utf-8")
    new = f"{gen.edit_description} Edited ({round_})."
    old_line = next(line for line in text.splitlines() if line.startswith("  description: "))
    path.write_text(text.replace(old_line, f"  description: {new}", 1), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Measurements


def cli_command() -> list[str]:
    """The installed console script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("mlops.exe" if os.name == "nt" else "mlops")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from mlops.cli.main import main; main()"]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLOPS_STORE", None)  # the generated pyproject.toml names the store
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # see the module docstring
    return env


_OK_LINE = re.compile(r"^ok: (\d+) manifests?: 0 errors", re.MULTILINE)


def run_validate(gen: Generated, expected: int) -> float:
    command = [*cli_command(), "validate", "--repo", str(gen.root)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=_child_env(), check=False)
    elapsed = time.perf_counter() - start
    match = _OK_LINE.search(result.stdout)
    if result.returncode != 0 or match is None or int(match[1]) != expected:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(
            f"validate did not pass as expected (exit {result.returncode}, wanted 0 and {expected} manifests)"
        )
    return elapsed


def parse_floor(gen: Generated) -> float:
    import yaml

    loader = getattr(yaml, "CSafeLoader", None)
    if loader is None:
        say("warning: PyYAML has no libyaml (CSafeLoader); the floor uses the pure-Python SafeLoader")
        loader = yaml.SafeLoader
    start = time.perf_counter()
    for rel in gen.paths:
        text = (gen.root / rel).read_bytes().decode("utf-8")
        yaml.load(text, Loader=loader)
    return time.perf_counter() - start


@dataclass
class Measured:
    label: str
    runs: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def measure(label: str, repeat: int, before: Callable[[int], None], run: Callable[[], float]) -> Measured:
    result = Measured(label)
    for i in range(1, repeat + 1):
        before(i)
        seconds = run()
        result.runs.append(seconds)
        say(f"  {label} {i}/{repeat}: {seconds:.3f} s")
    return result


def drop_cache(gen: Generated) -> None:
    shutil.rmtree(gen.root / ".mlops" / "cache", ignore_errors=True)


# --------------------------------------------------------------------------------------------
# The in-process breakdown of a run (a child process, so imports are measured from scratch)

_BREAKDOWN = r"""
import json, sys, time
t0 = time.perf_counter()
import mlops.cli.main
import mlops.reports.validation as reports
import mlops.loader.snapshot as snapshot
from mlops.loader.cache import ParseCache
from mlops.services import validate as service
from pathlib import Path
t1 = time.perf_counter()
spent = {}

def timed(label, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.perf_counter() - start
    return wrapper

# The real service runs; only the names it calls are wrapped (a missing name is skipped, never an error).
for owner, name, label in [
    (service, "load_documents", "load"),
    (snapshot, "read_manifest", "parse"),
    (service, "build_index", "schemas"),
    (service, "check_repository", "cross"),
    (service, "_check_store", "store"),
]:
    if hasattr(owner, name):
        setattr(owner, name, timed(label, getattr(owner, name)))
for name, label in [("save", "save")]:
    if hasattr(ParseCache, name):
        setattr(ParseCache, name, timed(label, getattr(ParseCache, name)))
if hasattr(ParseCache, "for_repo"):
    ParseCache.for_repo = staticmethod(timed("cache-load", ParseCache.for_repo))
t2 = time.perf_counter()
report = service.validate_repository(Path(sys.argv[1]))
t3 = time.perf_counter()
text = reports.render_text(report)
t4 = time.perf_counter()
assert report.documents == int(sys.argv[2]) and not report.errors, text[-2000:]
get = spent.get
print(json.dumps({
    "import mlops (CLI, services, loader, manifests)": t1 - t0,
    "load the parse cache": get("cache-load", 0.0),
    "scan, stat, read + hash changed files": get("load", 0.0) - get("parse", 0.0) - get("save", 0.0),
    "parse changed files (libyaml + YAML 1.2 resolver)": get("parse", 0.0),
    "save the parse cache": get("save", 0.0),
    "schemas + placement (reused: changed files)": get("schemas", 0.0),
    "cross-file rules (none when reused)": get("cross", 0.0),
    "artifact store check": get("store", 0.0),
    "rest of validate + render": (t3 - t2) - sum(spent.values()) + get("parse", 0.0) + get("save", 0.0)
    + (t4 - t3),
}))
"""


def breakdown(gen: Generated, expected: int) -> dict[str, float] | None:
    command = [sys.executable, "-c", _BREAKDOWN, str(gen.root), str(expected)]
    result = subprocess.run(command, capture_output=True, text=True, env=_child_env(), check=False)
    if result.returncode != 0:  # the breakdown follows the service's internals; never fail the benchmark on it
        say(f"  (breakdown unavailable: {result.stderr.strip().splitlines()[-1:] or result.returncode})")
        return None
    phases: dict[str, float] = json.loads(result.stdout)
    return phases


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--manifests", type=int, default=10_000, help="how many manifests to generate")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is reported")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="generate into DIR (must not exist) and keep it")
    parser.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    try:
        import mlops.stores.artifacts  # noqa: F401 - generate() lays out the store through it
    except ImportError:
        raise SystemExit(
            "mlops is not importable: run this with the project's virtualenv, e.g. "
            ".venv/bin/python benchmarks/validate_10k.py (scripts/quickstart creates it)"
        ) from None

    if args.keep is not None:
        if args.keep.exists():
            raise SystemExit(f"--keep {args.keep}: already exists; pick a new folder")
        root = args.keep.resolve()
        cleanup = None
    else:
        cleanup = tempfile.mkdtemp(prefix="mlops-bench-")
        root = Path(cleanup) / "state"
    try:
        return _run(root, args.manifests, args.repeat, args.fail_on_miss)
    finally:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)


def _run(root: Path, total: int, repeat: int, fail_on_miss: bool) -> int:
    say(f"generating {total:,} manifests in {root}")
    start = time.perf_counter()
    gen = generate(root, total)
    say(f"  {len(gen.paths):,} manifests, {len(gen.digests):,} artifacts in {time.perf_counter() - start:.1f} s")
    say(f"CLI: {' '.join(cli_command())} validate --repo {root}")

    say("(c) parse floor: read + yaml.load(CSafeLoader), in process")
    floor = measure("floor", repeat, lambda _: None, lambda: parse_floor(gen))

    say("(a) cold validate: no .mlops/cache")
    cold = measure("cold", repeat, lambda _: drop_cache(gen), lambda: run_validate(gen, total))

    say("(d) warm validate, no change")
    run_validate(gen, total)  # make sure the cache is complete and saved before timing warm runs
    warm = measure("warm", repeat, lambda _: None, lambda: run_validate(gen, total))

    say(f"(b) warm validate after editing {gen.edit_path}")
    one = measure("one-file", repeat, lambda i: edit_one(gen, i), lambda: run_validate(gen, total))

    say("phase by phase, in process: a cold run, then one after editing one file")
    drop_cache(gen)
    cold_phases = breakdown(gen, total)
    edit_one(gen, repeat + 1)
    one_phases = breakdown(gen, total)

    rows = [
        ("(c) parse floor, CSafeLoader", floor),
        ("(a) cold validate", cold),
        ("(b) warm, one file changed", one),
        ("(d) warm, no change", warm),
    ]
    say("")
    say(f"{total:,} manifests, median of {repeat}; CLI runs include process start-up")
    say(f"{'measurement':<34}{'median':>10}   runs")
    for label, measured in rows:
        runs = " ".join(f"{r:.3f}" for r in measured.runs)
        say(f"{label:<34}{measured.median:>8.3f} s   {runs}")
    if cold_phases and one_phases:
        say("")
        say(f"{'in process (one run each)':<52}{'cold':>8}{'one-file':>10}")
        for label, seconds in cold_phases.items():
            say(f"  {label:<50}{seconds:>8.3f}{one_phases.get(label, 0.0):>10.3f}")
        say(
            f"  {'total (no interpreter start-up or exit)':<50}{sum(cold_phases.values()):>8.3f}"
            f"{sum(one_phases.values()):>10.3f}"
        )
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        say("note: PYTHONDONTWRITEBYTECODE is set, so every CLI run compiles mlops from source (no .pyc)")

    ratio = cold.median / floor.median
    cold_ok = ratio <= COLD_GOAL
    warm_ok = one.median < WARM_GOAL
    say("")
    say(f"cold / floor        = {ratio:6.2f}     goal <= {COLD_GOAL:.1f}    {'PASS' if cold_ok else 'MISS'}")
    say(f"warm one-file       = {one.median:6.3f} s   goal <  {WARM_GOAL:.1f} s  {'PASS' if warm_ok else 'MISS'}")
    say(f"warm no change      = {warm.median:6.3f} s   (floor {floor.median:.3f} s)")
    return 1 if fail_on_miss and not (cold_ok and warm_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
