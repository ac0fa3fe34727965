"""Who the release writes to the Hugging Face Hub as: `HF_TOKEN` when it is set, else keyless.

- `HF_TOKEN`, a fine-grained token limited to the organisation's repos: everything, including creating
  a variant's repo the first time it is released.
- Keyless, in a GitHub Actions job with `id-token: write` and no `HF_TOKEN`: huggingface_hub exchanges
  the job's OIDC token for a one-hour token that writes to one existing repo, the one named by
  `HF_OIDC_RESOURCE` (the Hub's "Trusted Publishers", set on each repo). `writing_to(repo)` names each
  repo while it is written; the client exchanges again when the repo changes or the hour runs out.
  Such a token cannot create a repo: a variant's first release needs `HF_TOKEN`.

docs/releasing.md, "Hub credentials", gives a maintainer's setup for each.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

TOKEN = "HF_TOKEN"
RESOURCE = "HF_OIDC_RESOURCE"  # huggingface_hub's switch to the exchange (utils/_auth.py, get_token)
EXCHANGE = "/oauth/token"  # where the Hub exchanges an OIDC token (RFC 8693)
GITHUB_OIDC = "ACTIONS_ID_TOKEN_REQUEST_URL"  # set by GitHub only in a job with `id-token: write`
SETUP = ("add this repository's release.yml (environment release) as the repo's trusted publisher on the Hub, "
         "or set the secret HF_TOKEN (docs/releasing.md, 'Hub credentials')")


def has_token(token: str | None = None) -> bool:
    """Whether writes use a token: one given, or `HF_TOKEN`."""
    return bool(token or os.environ.get(TOKEN))


def keyless(token: str | None = None) -> bool:
    """Whether writes go through the OIDC exchange: no token, and GitHub offers an OIDC token to this job."""
    return not has_token(token) and bool(os.environ.get(GITHUB_OIDC))


def described(token: str | None = None) -> str:
    """How this process writes to the Hub, for the log."""
    if keyless(token):
        return "keyless: a one-hour token per repo, exchanged for this job's GitHub OIDC token"
    return TOKEN if has_token(token) else "nobody: no HF_TOKEN, and no OIDC token to exchange"


def cannot_create(missing: list[str]) -> str:
    """Why keyless publication cannot start: `missing` repos do not exist yet."""
    one = len(missing) == 1
    return (f"{', '.join(missing)} {'does' if one else 'do'} not exist, and a keyless token writes only to an "
            f"existing repo: create {'it' if one else 'them'}, then {SETUP}")


@contextmanager
def writing_to(repo_id: str, token: str | None = None) -> Iterator[None]:
    """While inside, a keyless client's token is the one for `repo_id`; with a token, nothing changes."""
    if not keyless(token):
        yield
        return
    before = os.environ.get(RESOURCE)
    os.environ[RESOURCE] = repo_id
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RESOURCE, None)
        else:
            os.environ[RESOURCE] = before
