"""Reading user files with errors that name the file (``InputError``, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aegis_core.model.errors import InputError


def read_text(path: str | Path, what: str = "file") -> str:
    """The file's text; a missing, unreadable or undecodable file is an InputError."""
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def read_json(path: str | Path, what: str = "file") -> Any:
    """The file's JSON document; invalid JSON is an InputError naming its line."""
    try:
        return json.loads(read_text(path, what))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
