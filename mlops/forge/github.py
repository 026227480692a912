"""A minimal GitHub REST client: open a pull request, list its reviews.

``GITHUB_API_URL`` selects the server (GitHub Enterprise, or a local test server);
the token comes from ``MLOPS_GITHUB_TOKEN`` or ``GITHUB_TOKEN``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from mlops.errors import InputError, MlopsError

DEFAULT_API = "https://api.github.com"


class ForgeError(MlopsError):
    exit_code = 1


@dataclass(frozen=True)
class GitHub:
    api_url: str
    token: str
    repository: str  # owner/name

    @classmethod
    def from_environment(cls, remote_url: str | None) -> GitHub:
        token = os.environ.get("MLOPS_GITHUB_TOKEN") or os.environ.get("GITHUB_TOKEN")
        if not token:
            raise InputError("no GitHub token: set GITHUB_TOKEN (or MLOPS_GITHUB_TOKEN) to open pull requests")
        repository = os.environ.get("GITHUB_REPOSITORY") or slug_from_remote(remote_url)
        if not repository:
            raise InputError(
                "cannot tell the GitHub repository: set GITHUB_REPOSITORY=owner/name or add a GitHub 'origin' remote"
            )
        return cls(os.environ.get("GITHUB_API_URL", DEFAULT_API).rstrip("/"), token, repository)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.api_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
                "User-Agent": "mlops",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            raise ForgeError(f"GitHub {method} {path} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ForgeError(f"cannot reach GitHub at {self.api_url}: {getattr(exc, 'reason', exc)}") from None

    def open_pull_request(self, head: str, base: str, title: str, body: str) -> str:
        answer = self._request(
            "POST", f"/repos/{self.repository}/pulls", {"title": title, "head": head, "base": base, "body": body}
        )
        url = answer.get("html_url") if isinstance(answer, dict) else None
        if not isinstance(url, str):
            raise ForgeError("GitHub created no pull request (no html_url in its answer)")
        return url

    def reviews(self, number: int) -> list[dict[str, Any]]:
        answer = self._request("GET", f"/repos/{self.repository}/pulls/{number}/reviews")
        return answer if isinstance(answer, list) else []


def slug_from_remote(url: str | None) -> str | None:
    if not url:
        return None
    match = re.search(r"github\.com[:/](?P<slug>[^/]+/[^/]+?)(?:\.git)?/?$", url)
    return match["slug"] if match else None
