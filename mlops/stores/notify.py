"""Where results are sent when someone should hear about them: stdout, a file, a webhook (UC-18 step 7, 6a).

One small interface (:class:`Notifier`) with three backends:

* :class:`StdoutNotifier` hands one line to a callback (the CLI passes its ``echo``: only the
  CLI prints);
* :class:`FileNotifier` appends one JSON object per line to a file (a log a tool can tail);
* :class:`WebhookNotifier` POSTs the JSON with urllib (no extra dependency) and a timeout,
  retried a few times; any 2xx answer counts as delivered.

A failed delivery never undoes what it reports on (the version is registered, the result
recorded): :func:`deliver` returns each target's outcome and the caller reports failures.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mlops.errors import StoreError
from mlops.stores.retry import RetryPolicy, with_retries

WEBHOOK_TIMEOUT = 5.0
WEBHOOK_RETRY = RetryPolicy(attempts=3, first_delay=0.5, factor=2.0)


@dataclass(frozen=True)
class Notification:
    event: str  # "dataset.quality"
    subject: str  # "customers@3"
    status: str  # "validated" | "failed" | "quarantined"
    summary: str  # one line a person reads
    payload: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, "subject": self.subject, "status": self.status, "summary": self.summary,
                **self.payload}


class Notifier(Protocol):
    @property
    def target(self) -> str: ...

    def send(self, notification: Notification) -> None: ...


class StdoutNotifier:
    def __init__(self, echo: Callable[[str], None]) -> None:
        self._echo = echo
        self.target = "stdout"

    def send(self, notification: Notification) -> None:
        self._echo(f"notify: {notification.summary}")


class FileNotifier:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.target = str(path)

    def send(self, notification: Notification) -> None:
        line = json.dumps(notification.to_json(), sort_keys=True, ensure_ascii=False) + "\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One write of one line in append mode: concurrent writers interleave whole lines.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot append to {self.path}: {exc.strerror or exc}") from None


class WebhookNotifier:
    def __init__(self, url: str, timeout: float = WEBHOOK_TIMEOUT, retry: RetryPolicy = WEBHOOK_RETRY) -> None:
        if not url.startswith(("http://", "https://")):
            raise StoreError(f"webhook {url!r}: expected an http:// or https:// address")
        self.url = url
        self.timeout = timeout
        self.retry = retry
        self.target = url

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.to_json(), sort_keys=True).encode("utf-8")

        def post() -> None:
            request = urllib.request.Request(
                self.url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "mlops-notify/1"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # http(s): see __init__
                    response.read()
            except urllib.error.HTTPError as exc:
                if 400 <= exc.code < 500 and exc.code != 429:
                    raise _Permanent(f"the webhook answered {exc.code} {exc.reason}") from None
                raise OSError(f"the webhook answered {exc.code} {exc.reason}") from None
            except urllib.error.URLError as exc:
                raise OSError(str(exc.reason)) from None

        try:
            with_retries(f"notifying {self.url}", post, (OSError, TimeoutError), self.retry)
        except _Permanent as exc:
            raise StoreError(f"notifying {self.url} failed: {exc}") from None


class _Permanent(Exception):
    """A 4xx answer: asking again would get the same one."""


@dataclass(frozen=True)
class Delivery:
    target: str
    ok: bool
    error: str | None = None


def deliver(notification: Notification, notifiers: Sequence[Notifier]) -> list[Delivery]:
    out = []
    for notifier in notifiers:
        try:
            notifier.send(notification)
        except StoreError as exc:
            out.append(Delivery(notifier.target, False, exc.message))
        else:
            out.append(Delivery(notifier.target, True))
    return out
