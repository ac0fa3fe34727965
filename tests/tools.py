"""The toolchains the consumer tests drive (cargo, node, npm): a test without them is skipped, except on
CI (CI=true), where a skip would hide a broken consumer."""

from __future__ import annotations

import os
import shutil

import pytest


def required(*tools: str, purpose: str) -> list[str]:
    """The path of each of `tools`; skip (fail on CI) naming the missing ones and `purpose`."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not on PATH: {purpose}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must run this test, so install {' and '.join(missing)} in the workflow")
        pytest.skip(message)
    return [shutil.which(tool) for tool in tools]
