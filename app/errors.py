"""User-facing errors: anything a user did wrong becomes one short message, never a traceback."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)
#: What a panel says after a volume it cannot open (the full list is ``ml.io.errors.SUPPORTED_FORMATS``).
FORMATS_HINT = "Accepted: grey TIFF stacks, folders of TIFF/PNG slices, Zarr/OME-Zarr, HDF5 and MRC."


class UserError(Exception):
    """Something the user can fix (bad path, unsupported file, invalid value); ``str()`` is the message."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotFound(UserError):
    """A project/volume/model id that does not exist (any more)."""


def user_message(exc: BaseException) -> str:
    """One line for the UI: the message of known input errors, a generic line (and a log entry) otherwise."""
    if isinstance(exc, UserError):
        return exc.message
    try:
        from ml.io.errors import VolumeFormatError
    except ImportError:  # pragma: no cover - ml.io not installed yet
        VolumeFormatError = ()  # type: ignore[assignment]
    if VolumeFormatError and isinstance(exc, VolumeFormatError):
        short = getattr(exc, "short", None)      # without the long list of accepted formats
        return f"{short}. {FORMATS_HINT}" if isinstance(short, str) and short != str(exc) else str(exc)
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ValueError):
        return str(exc) or "invalid value"
    log.exception("unexpected error", exc_info=exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}. The details are in the server log."
