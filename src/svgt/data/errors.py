"""Errors raised by svgt.data, in one place so the CLI can catch every data problem with one `except`."""

from __future__ import annotations


class DataError(ValueError):
    """A data file is malformed; the message names the file, the line and the field."""


class MissingSourceError(DataError):
    """A packaged data source is not installed; the message names the command that installs it."""
