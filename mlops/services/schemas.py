"""JSON Schema of every kind, generated from the pydantic models (the models are the source of truth)."""

from __future__ import annotations

import json
from pathlib import Path

from mlops.loader.atomic import atomic_write_text
from mlops.manifests import KINDS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def generate_schemas() -> dict[str, str]:
    """File name -> schema text, deterministic so the checked-in copies can be compared byte for byte."""
    out = {}
    for kind, model in KINDS.items():
        schema = model.model_json_schema(mode="validation")
        schema = {
            "$schema": SCHEMA_DIALECT,
            "$id": f"https://mlops.dev/schemas/{kind}.schema.json",
            "title": kind,
            **{k: v for k, v in schema.items() if k != "title"},
        }
        out[schema_file_name(kind)] = json.dumps(schema, indent=2, ensure_ascii=False) + "\n"
    return out


def schema_file_name(kind: str) -> str:
    return f"{kind}.schema.json"


def export_schemas(directory: Path) -> list[Path]:
    written = []
    for name, text in generate_schemas().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            written.append(path)
    return written


def stale_schemas(directory: Path) -> list[str]:
    """Names of checked-in schemas that differ from (or are missing against) the generated ones."""
    stale = []
    for name, text in generate_schemas().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale
