"""What a failed task's message shows, in a few lines: the app's own frames of what it raised
(Starlette, FastAPI, anyio and asyncio plumbing counted, not shown), the request, and the
attempts the task made."""

from __future__ import annotations

import functools
import importlib.util
import os
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["attempt_history", "last_response"]

# Frames of these are the server around the app, not the app: a sync endpoint's exception
# passes through ~45 of them.
_PLUMBING = ("starlette", "fastapi", "anyio", "pytest_cloudtasks", "asyncio", "concurrent",
             "contextlib", "threading",
             # and around a WSGI app: its adapter and framework
             "a2wsgi", "flask", "werkzeug", "django")
_CHAIN_LIMIT = 4
_HISTORY_GROUPS = 6
_BODY_LIMIT = 2000


@functools.cache
def _plumbing_paths() -> tuple[str, ...]:
    paths: list[str] = []
    for name in _PLUMBING:
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        if spec.submodule_search_locations:  # a package: everything under it
            paths.extend(os.path.join(p, "") for p in spec.submodule_search_locations)
        elif spec.origin:
            paths.append(spec.origin)
    return tuple(paths)


def _app_frames(exc: BaseException) -> tuple[list[str], int]:
    frames = traceback.extract_tb(exc.__traceback__)
    plumbing = _plumbing_paths()
    kept = [f for f in frames if not f.filename.startswith(plumbing)]
    if not kept:  # raised inside the framework itself: its innermost frames tell the story
        kept = frames[-3:]
    return traceback.format_list(kept), len(frames) - len(kept)


def app_traceback(exc: BaseException) -> str:
    """`exc` (with its causes) as Python prints it, keeping the app's frames only."""
    chain: list[tuple[BaseException, str]] = []
    current: BaseException | None = exc
    link = ""
    while current is not None and len(chain) < _CHAIN_LIMIT and all(
            current is not seen for seen, _ in chain):
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, ("The above exception was the direct cause of "
                                                "the following exception:")
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, ("During handling of the above exception, "
                                                  "another exception occurred:")
        else:
            current = None
    parts: list[str] = []
    hidden = 0
    below = ""  # the sentence Python prints between a cause and what it led to
    for item, link in reversed(chain):
        lines, count = _app_frames(item)
        hidden += count
        if parts:
            parts.append(f"\n{below}\n\n")
        below = link
        parts.append("Traceback (most recent call last):\n")
        parts.extend(lines)
        parts.extend(traceback.format_exception_only(type(item), item))
    if hidden:
        parts.append(f"({hidden} frames of the server around the app hidden: Starlette, "
                     "FastAPI, anyio, asyncio; attempt.exception has the whole traceback)\n")
    return "".join(parts)


def last_response(attempt: Any) -> str:
    """The answer of `attempt`: the app's traceback if it raised, else status and body."""
    if attempt.exception is not None:
        return f"500 from an exception in the app:\n{app_traceback(attempt.exception)}"
    text = attempt.response.text[:_BODY_LIMIT] if attempt.response is not None else ""
    return f"{attempt.status_code} {text}"


def _answer(attempt: Any) -> str:
    injected = getattr(attempt, "injected", None)
    if injected is not None:  # chaos settings: the app's answer, or none (see chaos.py)
        return f"{attempt.status_code} (injected {injected})"
    if attempt.exception is not None:
        return f"{attempt.status_code} ({type(attempt.exception).__name__})"
    return str(attempt.status_code)


def attempt_history(attempts: Sequence[Any], last: Any) -> str:
    """The attempts of `last`'s task (or job run) up to `last`, equal answers grouped:
    `Attempts: #1-#99 500 (RuntimeError) from 2026-01-01T00:00:00+00:00 to ...`."""
    own: list[Any] = []
    for attempt in reversed(attempts):  # back to this run's first attempt
        if attempt.task.name == last.task.name and attempt.number <= last.number and (
                not own or attempt.number < own[-1].number):
            own.append(attempt)
            if attempt.number == 1:
                break
    own.reverse()
    groups: list[list[Any]] = []
    for attempt in own:
        if groups and _answer(groups[-1][-1]) == _answer(attempt):
            groups[-1].append(attempt)
        else:
            groups.append([attempt])
    parts = []
    for group in groups[-_HISTORY_GROUPS:]:
        first, end = group[0], group[-1]
        if first is end:
            parts.append(f"#{first.number} {_answer(first)} at {first.dispatch_time.isoformat()}")
        else:
            parts.append(f"#{first.number}-#{end.number} {_answer(first)} from "
                         f"{first.dispatch_time.isoformat()} to {end.dispatch_time.isoformat()}")
    skipped = len(groups) - _HISTORY_GROUPS
    return "Attempts: " + ("..., " if skipped > 0 else "") + "; ".join(parts)
