"""Errors of the shared reference data.

A data file that is wrong refuses to load, naming the place (file, line, path), because a wrong
code here silently sends clients to the wrong place. A query with a bad filter is refused with
the field it names; callers translate it into their own error (the referral service answers
INVALID_ARGUMENT).
"""

from __future__ import annotations


class ReferenceDataError(Exception):
    """A reference data file cannot be used; ``place`` names where (file, line, path)."""

    code = "INVALID_REFERENCE_DATA"

    def __init__(self, place: str, message: str) -> None:
        super().__init__(f"{place}: {message}")
        self.place = place
        self.message = f"{place}: {message}"
        self.problem = message

    def __str__(self) -> str:
        return self.message


class DirectoryError(ReferenceDataError):
    """The agency directory file is invalid."""

    code = "INVALID_DIRECTORY"


class InvalidQuery(ValueError):
    """A lookup filter is not a valid code; ``field`` names the filter."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
