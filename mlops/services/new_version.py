"""What registering a new version shares, for a model (``register``) and a dataset (``snapshot_register``).

The tool drafts each manifest as plain data, checks it with its kind's model before anything is
written, and refuses a version number that other content holds with :class:`VersionConflict`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mlops.errors import InputError, MlopsError, UsageError
from mlops.manifests.base import API_VERSION, Manifest


class VersionConflict(MlopsError):
    """The version number asked for is taken by other content (UC-16 6a)."""

    exit_code = 1


def manifest_data(kind: type[Manifest], name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind.KIND, "metadata": {"name": name}, "spec": spec}


def check_version(kind: type[Manifest], path: str, data: dict[str, Any]) -> None:
    """Refuse (:class:`InputError`) a drafted version manifest that ``kind`` would not accept, naming the field."""
    try:
        kind.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(f"{path}: would not be valid: {where}: {first['msg']}") from None


def first_manifest_text(kind: type[Manifest], path: str, name: str, spec: dict[str, Any], what: str) -> str:
    """The text of the manifest that a first version creates (a model's, a dataset's), checked by ``kind``.

    An invalid one is the user's input (an owner, a description): :class:`UsageError` says which ``what``.
    """
    data = manifest_data(kind, name, spec)
    try:
        kind.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"cannot create {what} {name!r}: {exc.errors()[0]['msg']}") from None
    from mlops.loader.manifest_io import render_manifest  # ruamel: only when a manifest is written

    return render_manifest(path, data)
