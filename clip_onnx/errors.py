"""Expected failures: the CLI prints their message as one line, no traceback.

Each carries a `kind`, one of `KINDS`: the names the Rust crate (`Error::kind`) and the Node consumer
(`error.kind`) give the same failures, so a program can branch on it in any language. The shared test
vectors' `bad_inputs` table holds all three to the same kind for each bad input."""

KINDS = (
    "not_an_export",       # the folder has no manifest.json
    "bad_manifest",        # manifest.json is not JSON, or lacks a key consumers read
    "unsupported_format",  # manifest.json's format_version is not one this reader reads
    "missing_file",        # a file the manifest needs, or an input file, does not exist
    "changed_file",        # a file differs from its size and SHA-256 in the manifest, or is not listed there
    "unreadable_image",    # not an image, a format not read, truncated or damaged, or too many pixels
    "text_too_long",       # a text over the context length, without truncation
    "usage",               # the command line or a call asks for something contradictory or empty
    "invalid_input",       # any other bad input or environment
)


class ClipOnnxError(Exception):
    """Bad input or environment: the message says what is wrong and what to do; `kind` says which."""

    def __init__(self, message: str, kind: str = "invalid_input"):
        if kind not in KINDS:
            raise ValueError(f"unknown error kind {kind!r}; one of {', '.join(KINDS)}")
        super().__init__(message)
        self.kind = kind


class UsageError(ClipOnnxError):
    """The command line asks for something contradictory or empty (exit code 2, like argparse's)."""

    def __init__(self, message: str):
        super().__init__(message, "usage")
