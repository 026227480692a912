"""Drafted manifests of a new version: checked by their kind's model before anything is written."""

from __future__ import annotations

import pytest
import yaml

from mlops.errors import InputError, UsageError
from mlops.manifests import Dataset, DatasetVersion
from mlops.services.new_version import check_version, first_manifest_text, manifest_data


def test_a_draft_its_model_refuses_names_the_path_and_the_field() -> None:
    data = manifest_data(DatasetVersion, "customers", {"version": 0, "fingerprint": {"digest": "sha256:x"}})
    with pytest.raises(InputError, match=r"^registry/datasets/customers/versions/0\.yaml: would not be valid: spec\."):
        check_version(DatasetVersion, "registry/datasets/customers/versions/0.yaml", data)


def test_the_first_manifest_is_rendered_when_valid_and_refused_as_usage_when_not() -> None:
    path = "registry/datasets/customers/dataset.yaml"
    text = first_manifest_text(Dataset, path, "customers", {"owner": "data@example.com"}, "dataset")
    assert yaml.safe_load(text) == {
        "apiVersion": manifest_data(Dataset, "x", {})["apiVersion"],
        "kind": "Dataset",
        "metadata": {"name": "customers"},
        "spec": {"owner": "data@example.com"},
    }
    with pytest.raises(UsageError, match=r"^cannot create dataset 'customers': "):
        first_manifest_text(Dataset, path, "customers", {"owner": ""}, "dataset")
