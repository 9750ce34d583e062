"""Errors a user can act on: one line saying what is wrong, one `hint:` line saying what to do."""

from __future__ import annotations


class UserError(Exception):
    """Bad input. The CLI prints `error: <message>` and `hint: <hint>` and exits with code 2."""

    exit_code = 2

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # always one line
        self.hint = " ".join(hint.split())

    def __str__(self) -> str:
        return self.message


class NothingToDo(UserError):
    """Not an error: the request was fine but there is nothing to act on (exit 0)."""

    exit_code = 0
