"""Helpers both engines use on Google's request messages: list paging and field masks."""

from __future__ import annotations

from typing import Any

__all__ = ["copy_path", "page"]


def page(items: list[Any], size: int, token: str) -> tuple[list[Any], str]:
    start = int(token) if token.isdigit() else 0
    size = size or 1000
    end = start + size
    return items[start:end], (str(end) if end < len(items) else "")


def copy_path(source: Any, target: Any, path: str) -> None:
    """Copy one field-mask path (`rate_limits` or `retry_config.max_attempts`)."""
    *parents, leaf = path.split(".")
    for part in parents:
        source, target = getattr(source, part), getattr(target, part)
    setattr(target, leaf, getattr(source, leaf))
