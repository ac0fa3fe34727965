"""Expected failures: the CLI prints their message as one line, no traceback."""


class ClipOnnxError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""


class UsageError(ClipOnnxError):
    """The command line asks for something contradictory or empty (exit code 2, like argparse's)."""

