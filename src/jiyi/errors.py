"""The one error type a user sees: a message that names the flag, file or line, and what to do."""


class JiyiError(Exception):
    """A user error: the CLI prints its message (no traceback) and exits with code 2.

    >>> raise JiyiError("data/train.csv line 7: empty text. Fix the line or pass --on-bad-rows skip.")
    """

    exit_code = 2
