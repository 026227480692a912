"""`mlops init`: a new state repository that passes `mlops validate` at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlops.errors import InputError
from mlops.loader.atomic import atomic_write_bytes
from mlops.loader.gitwrite import commit_only, ensure_repo, has_identity
from mlops.services.schemas import generate_schemas

# Package data cannot hold dot-files reliably, so templates use plain names and are renamed on the way out.
_TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "starter"
_RENAMES = {"github": ".github", "gitignore": ".gitignore", "gitkeep": ".gitkeep"}


@dataclass(frozen=True)
class InitResult:
    root: Path
    files: list[str]
    commit: str | None
    note: str | None = None


def _template_files() -> dict[str, bytes]:
    out: dict[str, bytes] = {}

    def walk(node: Path, rel: str) -> None:
        for child in node.iterdir():
            name = _RENAMES.get(child.name, child.name)
            child_rel = f"{rel}/{name}" if rel else name
            if child.is_dir():
                walk(child, child_rel)
            else:
                out[child_rel] = child.read_bytes()

    walk(_TEMPLATES, "")
    for name, text in generate_schemas().items():
        out[f"schemas/{name}"] = text.encode("utf-8")
    return dict(sorted(out.items()))


def init_repository(root: Path, commit: bool = True) -> InitResult:
    files = _template_files()
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: exists and is not a folder")
    clashes = [rel for rel in files if (root / rel).exists()]
    if clashes:
        shown = ", ".join(clashes[:5]) + (f" and {len(clashes) - 5} more" if len(clashes) > 5 else "")
        raise InputError(f"{root}: would overwrite {shown}; nothing was written (init never replaces files)")
    root.mkdir(parents=True, exist_ok=True)
    ensure_repo(root)
    for rel, data in files.items():
        atomic_write_bytes(root / rel, data)
    if not commit:
        return InitResult(root, list(files), None, note="--no-commit: files are written but not committed")
    if not has_identity(root):
        return InitResult(
            root,
            list(files),
            None,
            note="git has no user.name/user.email here: files are written but not committed",
        )
    sha, _ = commit_only(
        root,
        list(files),
        "Initialize mlops state repository\n\n"
        "Written by `mlops init`: starter environments (development, staging, production), policies\n"
        "(promotion, access, artifact formats, risk tiers), JSON schemas of every kind, and the CI gate\n"
        "(.github/workflows/validate.yml runs `mlops validate --base` on every pull request).",
    )
    return InitResult(root, list(files), sha)
