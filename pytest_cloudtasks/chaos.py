"""At-least-once, on purpose: what Cloud Tasks does rarely, done on demand and replayable.

Google's "Common pitfalls" page (cloud.google.com/tasks/docs/common-pitfalls): Cloud Tasks
"errs on the side of guaranteed execution", so "a non-zero number of duplicate executions do
occur", and queues are "completely agnostic about execution order". A handler that is not
idempotent passes every test and fails in production; these settings make the drain do it:

- `duplicates`: that fraction of successful deliveries is delivered once more, right after.
- `shuffle`: the tasks due when the drain reaches an instant are delivered in a random order
  ("with the exception of tasks scheduled to run in the future", ibid.): the engine still
  decides what is due by then, and a task scheduled later still waits for its time.
- `transient_failures`: that fraction of tasks has its first attempt fail before it reaches
  the app, as a dispatch that got no answer.

Every choice comes from one `random.Random` seeded with the session's seed and the test's node
id, so a failure replays with `--cloudtasks-seed=N` whatever tests run beside it. Imported by
the plugin at every start: the standard library only.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

__all__ = ["DUPLICATE", "TRANSIENT", "Chaos", "ChaosConfig", "duplicate_headers"]

DUPLICATE = "duplicate"
TRANSIENT = "transient failure"
_LISTED = 5  # injected events a failure report names one by one


@dataclass(frozen=True)
class ChaosConfig:
    duplicates: float = 0.0  # fraction of successful deliveries delivered a second time
    shuffle: bool = False  # random order among tasks due at the same instant
    transient_failures: float = 0.0  # fraction of tasks whose first attempt never arrives
    seed: int = 0
    salt: str = ""  # the test's node id: each test draws its own sequence

    def __post_init__(self) -> None:
        for name in ("duplicates", "transient_failures"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not 0 <= value <= 1):
                raise ValueError(
                    f"{name}={value!r}: give a fraction from 0 to 1 (1 for every task, 0.1 "
                    "for one in ten)."
                )

    @property
    def on(self) -> bool:
        return bool(self.duplicates or self.shuffle or self.transient_failures)

    def describe(self) -> str:
        settings = [f"duplicates={self.duplicates:g}" if self.duplicates else "",
                    "shuffle=true" if self.shuffle else "",
                    f"transient_failures={self.transient_failures:g}"
                    if self.transient_failures else ""]
        return ", ".join(s for s in settings if s)


T = TypeVar("T")


class Chaos:
    """One test's injected events, drawn from its seed in the order the drain asks."""

    def __init__(self, config: ChaosConfig) -> None:
        self.config = config
        self.events: list[str] = []  # "duplicate of ... at ...", in the order injected

    @functools.cached_property
    def _random(self) -> random.Random:
        """Made on first use (most tests never draw). A str seed is hashed with SHA-512:
        the same sequence in every process, whatever PYTHONHASHSEED."""
        return random.Random(f"{self.config.seed}:{self.config.salt}")

    def _draw(self, fraction: float) -> bool:
        return fraction > 0 and self._random.random() < fraction

    def fails_before_app(self, retry_count: int) -> bool:
        """Whether this attempt is lost on its way: a task's first attempt only, so retries
        stay bounded by the queue's own limits."""
        return retry_count == 0 and self._draw(self.config.transient_failures)

    def duplicates_after_success(self) -> bool:
        return self._draw(self.config.duplicates)

    def order(self, due: Sequence[T], now: datetime) -> list[T]:
        """`due` (what the engine started at `now`, in its order) in a seeded order."""
        ordered = list(due)
        if len(ordered) > 1:
            self._random.shuffle(ordered)
            self.events.append(f"shuffled {len(ordered)} tasks due at {now.isoformat()}")
        return ordered

    def note(self) -> str:
        """The line failure messages end with: what is on, and how to replay it."""
        if not self.config.on:
            return ""
        seed = self.config.seed
        return (f"\nChaos ({self.config.describe()}) with seed {seed}: replay with "
                f"--cloudtasks-seed={seed}.")

    def report(self) -> str:
        """A failed test's report section: the seed and the events injected."""
        events = self.events[:_LISTED]
        more = len(self.events) - len(events)
        listed = "".join(f"\n  {event}" for event in events)
        if more:
            listed += f"\n  ... and {more} more"
        return (f"{self.note().strip()}\nInjected: {len(self.events) or 'nothing'}"
                f"{listed}")


def duplicate_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers of a duplicate delivery of an attempt that succeeded.

    A duplicate means the service did not record the first answer: Cloud Tasks deletes a task
    once it has a successful response, and `X-CloudTasks-TaskExecutionCount` counts the
    responses the service got (Firebase's TaskContext reference: "all previous handler
    responses were failures"). So the duplicate looks like the retry of an attempt that got no
    response: the same task name and ETA, RetryCount one more, ExecutionCount unchanged, and
    PreviousResponse 504, what this engine sends after an attempt with no answer (its
    DEADLINE_EXCEEDED); RetryReason is present and empty, as for HTTP targets. Pick and
    document: Google does not say which headers a duplicate carries.
    """
    copy = dict(headers)
    # App Engine tasks carry the same headers under X-AppEngine-* (engine/app_engine.py).
    prefix = "X-CloudTasks-" if "X-CloudTasks-TaskRetryCount" in headers else "X-AppEngine-"
    copy[f"{prefix}TaskRetryCount"] = str(int(headers[f"{prefix}TaskRetryCount"]) + 1)
    copy[f"{prefix}TaskPreviousResponse"] = "504"
    copy[f"{prefix}TaskRetryReason"] = ""
    return copy
