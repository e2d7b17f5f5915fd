"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class MgenError(Exception):
    """A problem the user can fix; `fix` says how (a command, a flag, a setting)."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message


class ModelNotFound(MgenError):
    """A manifest key or repo id that names no known or cached model."""


class DownloadError(MgenError):
    """The hub could not deliver a file (offline, 404, gated, disk full, bad checksum)."""


class PlanError(MgenError):
    """The job cannot fit the machine under any placement."""


class AudioError(MgenError):
    """An input audio file that cannot be used."""


class Interrupted(MgenError):
    """The user pressed Ctrl-C; nothing half-written is left behind."""

    exit_code = 130
