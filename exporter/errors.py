"""The one exception type for expected failures: the CLI prints its message as one line, no traceback."""


class ExporterError(Exception):
    """Bad input or environment: the message says what is wrong and what to do."""


class VerificationError(ExporterError):
    """ONNX Runtime disagreed with PyTorch beyond the tolerance table."""
