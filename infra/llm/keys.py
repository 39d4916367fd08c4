"""API keys: read from the environment by name, and scrubbed from every text that leaves here.

A key is never stored in a definition or an event: an agent names the environment variable
that holds it (``api_key_env``), and the variable is read in the process that makes the call
(for agents, the Ray worker, which inherits the environment Ray was started with). Every key
read here, and every vendor key variable set in the environment, is replaced by
``[redacted]`` in error messages and in every log record made in the process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

REDACTED = "[redacted]"
# Vendors' usual variables; their values are scrubbed even before anything reads them.
KEY_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GROQ_API_KEY", "XAI_API_KEY",
                 "DEEPSEEK_API_KEY", "GEMINI_API_KEY", "TOGETHER_API_KEY", "VLLM_API_KEY",
                 "OLLAMA_API_KEY")
# Shorter values are too likely to be ordinary words to be replaced everywhere.
MIN_SECRET_LENGTH = 6

_known: set[str] = set()


def read_key(variable: str) -> str | None:
    """The value of environment variable ``variable`` (remembered so it is scrubbed), or None."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    remember(value)
    return value


def remember(secret: str) -> None:
    """Scrub ``secret`` from every text that passes through ``scrub`` from now on."""
    if len(secret) >= MIN_SECRET_LENGTH:
        _known.add(secret)
    _install_log_filter()


def secrets() -> list[str]:
    """Every secret scrubbed here, longest first (so a key containing another goes whole)."""
    found = set(_known)
    for variable in KEY_VARIABLES:
        value = os.environ.get(variable, "").strip()
        if len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def scrub(text: str) -> str:
    """``text`` with every known key replaced by ``[redacted]``."""
    for secret in secrets():
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _scrubbed_record(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if not secrets():
            return record
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the handler's to report
            return record
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
        return record

    make.scrubs_keys = True  # type: ignore[attr-defined]
    return make


def _install_log_filter() -> None:
    """Scrub keys from every log record made in this process from now on."""
    # A record factory rather than a logger filter: filters do not apply to child loggers
    # (``openai._base_client``) nor to records of loggers created later.
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "scrubs_keys", False):
        logging.setLogRecordFactory(_scrubbed_record(factory))


# Keys in the vendors' variables are scrubbed from logs as soon as any provider code loads.
_install_log_filter()
