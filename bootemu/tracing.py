"""structlog configuration for the CLI: the ``console``, ``json`` and ``dmesg`` renderers.

Only the CLI (and tests) call :func:`configure`; the library just uses
``structlog.get_logger()`` through :class:`bootemu.boot.Tracer`. No timestamps are added:
the same boot gives the same trace, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

LOG_FORMATS = ("console", "json", "dmesg")


def _render_json(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    ordered = {"event": event_dict.pop("event"), "seq": event_dict.pop("seq", None)}
    ordered.update(event_dict)
    return json.dumps(ordered, separators=(",", ":"))


def _render_dmesg(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    text = event_dict.get("dmesg")
    if text is None:
        raise structlog.DropEvent
    return str(text)


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value else json.dumps(value)
    return json.dumps(value) if isinstance(value, (list, dict, tuple)) else str(value)


def _render_console(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    seq = event_dict.pop("seq", 0)
    event = event_dict.pop("event")
    dmesg = event_dict.pop("dmesg", None)
    fields = " ".join(f"{k}={_fmt(v)}" for k, v in event_dict.items())
    line = f"{seq:6} {event:<22} {fields}".rstrip()
    if dmesg is not None:
        line += "".join(f"\n{'':6} | {text}" for text in str(dmesg).split("\n"))
    return line


def _drop(_logger: Any, _name: str, _event_dict: MutableMapping[str, Any]) -> Any:
    raise structlog.DropEvent


def is_silent() -> bool:
    """Whether structlog drops every event (``configure(None)``): a boot's tracer then skips
    building its events at all (one per early request: about a seventh of a large boot).
    The processors are read each time: structlog.testing.capture_logs() edits the list in
    place."""
    processors = structlog.get_config()["processors"]
    return len(processors) == 1 and processors[0] is _drop


def configure(log_format: str | None, stream: TextIO | None = None) -> None:
    """Route trace events to ``stream`` in ``log_format``; None silences tracing."""
    if log_format is None:
        processors: list[Any] = [_drop]
    else:
        renderer = {"console": _render_console, "json": _render_json, "dmesg": _render_dmesg}
        processors = [renderer[log_format]]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
