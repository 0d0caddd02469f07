"""Errors that zerosum shows to users as one clear message, never a traceback."""


class ZerosumError(Exception):
    """Base class: the CLI prints these as `error: <message>` and exits non-zero."""


class ConfigError(ZerosumError, ValueError):
    """A job or campaign spec is invalid. The message names the field path and what is allowed."""


class DataError(ZerosumError):
    """A dataset could not be found or read. The message names the path and what to do."""
