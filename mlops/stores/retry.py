"""Retry a storage operation a few times with backoff, then report the last failure (UC-01 5a)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mlops.errors import StoreError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    first_delay: float = 0.2
    factor: float = 2.0


DEFAULT_RETRY = RetryPolicy()


def with_retries(
    what: str,
    operation: Callable[[], T],
    transient: tuple[type[BaseException], ...],
    policy: RetryPolicy | None = None,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    policy = policy or DEFAULT_RETRY
    delay = policy.first_delay
    for attempt in range(1, policy.attempts + 1):
        try:
            return operation()
        except transient as exc:
            if attempt == policy.attempts:
                raise StoreError(f"{what} failed after {policy.attempts} attempts: {_describe(exc)}") from exc
            if on_retry is not None:
                on_retry(attempt, exc)
            time.sleep(delay)
            delay *= policy.factor
    raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
