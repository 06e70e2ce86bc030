"""The bearer token file that the client and the server both read (never a token on the
command line, where `ps` shows it)."""

from __future__ import annotations

from pathlib import Path


class TokenFileError(ValueError):
    """The bearer token file is missing, unreadable or empty."""


def read_token(path: Path) -> str:
    """The bearer token from a file (never from the command line, where `ps` shows it)."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise TokenFileError(f"the token file {path} cannot be read: {exc.strerror}") from None
    if not token:
        raise TokenFileError(f"the token file {path} is empty")
    return token
