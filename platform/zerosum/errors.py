"""Errors that zerosum shows to users as one clear message, never a traceback."""


class ZerosumError(Exception):
    """Base class: the CLI prints these as `error: <message>` and exits non-zero."""


class ConfigError(ZerosumError, ValueError):
    """A job or campaign spec is invalid. The message names the field path and what is allowed."""


class DataError(ZerosumError):
    """A dataset could not be found or read. The message names the path and what to do."""


def first_line(message: object, empty: str = "no details") -> str:
    """A message (an exception's, say) on one line: MLflow's, Ray's and requests' carry
    stacks and hints below the first; `empty` when there is nothing at all."""
    text = str(message).strip()
    return text.splitlines()[0] if text else empty
