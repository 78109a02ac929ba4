"""Errors meant for people.

`UserError` carries a message that a person can act on (what went wrong and what to
do about it). The CLI prints it without a stack trace; the web app shows it in the page.
Anything else that escapes is a bug.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input or environment, with a message saying what to do."""


class ModelUnavailableError(UserError):
    """A model could not be loaded (missing files, offline, unsupported architecture)."""
