"""Expected failures: the CLI prints their message as one line, no traceback."""


class ClipOnnxError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""


class UsageError(ClipOnnxError):
    """The command line asks for something contradictory or empty (exit code 2, like argparse's)."""


class InconclusiveError(ClipOnnxError):
    """Verification could not tell: the files match PyTorch, but the model's outputs barely depend on
    its input (exit code 4; the files are written, their manifest says so, and releases refuse them)."""


class VerificationError(ClipOnnxError):
    """ONNX Runtime disagreed with PyTorch beyond the tolerance table."""


def first_problem(problems: dict[str, str]) -> str:
    """`{name: what is wrong}` as one phrase for a one-line error: the first, and how many more."""
    name, reason = next(iter(problems.items()))
    return f"{name} {reason}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
