"""A tag's GitHub Release, through GitHub's REST API (standard library only, so publishing installs nothing for it).

A release is built as a draft: `upload` adds one variant's assets at a time (missing ones uploaded,
broken ones -- a failed upload leaves an asset that is not `uploaded` -- replaced), `finish` compares
GitHub's own SHA-256 digest of every asset with what was staged and only then publishes it, so
consumers never see a release with missing or wrong files. Every step is safe to re-run; a published
release is never altered, and one whose assets differ is refused.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from email.message import Message
from pathlib import Path

from clip_onnx.errors import ClipOnnxError
from release.problems import first_problem

API = "https://api.github.com"
# What the canary saw GitHub do where GitHub's documentation is silent (`python -m release observe`);
# the doubles play what it records, and both possible answers while it records none.
OBSERVED = Path(__file__).with_name("github_observed.json")
MISSING, EXTRA = "is missing", "is not part of this release"
# A call is tried at most ATTEMPTS times; no single wait exceeds LONGEST_WAIT seconds (a longer rate limit
# fails at once, naming when to re-run). A POST is not repeated after a 5xx or a dropped connection: GitHub
# may have made the release or asset, and its callers resume on re-run.
ATTEMPTS, LONGEST_WAIT, TRANSIENT = 5, 15 * 60, (500, 502, 503, 504)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # the caller follows it, without the token
        return None


class GitHub:
    """The REST calls a release makes, for one repository (OWNER/NAME)."""

    def __init__(self, repo: str, token: str | None, api: str | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, now: Callable[[], float] = time.time):
        if not token:
            raise ClipOnnxError("no GitHub token: set GH_TOKEN (in a workflow: `GH_TOKEN: ${{ github.token }}`)")
        self.repo, self.token, self.sleep, self.now = repo, token, sleep, now
        self.api = (api or os.environ.get("GITHUB_API_URL") or API).rstrip("/")
        self._open = urllib.request.build_opener(_NoRedirect).open

    def request(self, method: str, url: str, *, payload: dict | None = None, data=None, size: int = 0,
                accept: str = "application/vnd.github+json") -> tuple[int, Message, bytes]:
        """One call; `url` is absolute or relative to the API. Non-2xx answers raise a one-line error;
        redirects are returned, for the caller to follow without the token. Header names are case-blind.
        Rate limits, 5xx answers and dropped connections are tried again, after a growing wait."""
        url = url if url.startswith("http") else f"{self.api}/{url.lstrip('/')}"
        where = f"{method} {url.split('?')[0]}"
        headers = {"Accept": accept, "X-GitHub-Api-Version": "2022-11-28", "Authorization": f"Bearer {self.token}"}
        if payload is not None:
            data, headers["Content-Type"] = json.dumps(payload).encode(), "application/json"
        elif data is not None:
            headers.update({"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        attempt = limited = 0  # calls made, rate limits met
        while True:
            attempt += 1
            last = attempt == ATTEMPTS
            if hasattr(data, "seek"):  # an asset's file, sent again from its start
                data.seek(0)
            try:
                with self._open(urllib.request.Request(url, data=data, method=method, headers=headers),
                                timeout=600) as response:
                    return response.status, response.headers, response.read()
            except urllib.error.HTTPError as error:
                if error.code in (301, 302, 307):
                    return error.code, error.headers, b""
                message = _message(error.read().decode(errors="replace")[:300])
                wait = _rate_limit_wait(error.code, error.headers, message, self.now(), limited)
                if wait is not None:  # the call was not made: every method is tried again
                    limited += 1
                    if last or wait > LONGEST_WAIT:
                        resets = datetime.fromtimestamp(self.now() + wait, timezone.utc)
                        raise ClipOnnxError(f"GitHub answered {error.code} to {where}: a rate limit ({message}), "
                                            f"which resets at {resets:%Y-%m-%d %H:%M:%S} UTC; re-run after it") from None
                elif error.code in TRANSIENT and method != "POST" and not last:
                    wait = 2 ** (attempt - 1)
                else:
                    raise ClipOnnxError(f"GitHub answered {error.code} to {where}: {message}{_advice(error.code)}"
                                        ) from None
            except OSError as error:  # no answer: refused, reset or timed out
                if method == "POST" or last:
                    raise ClipOnnxError(f"GitHub {where} failed: {error}; re-run to resume") from None
                wait = 2 ** (attempt - 1)
            self.sleep(wait)

    def json(self, method: str, url: str, payload: dict | None = None):
        return json.loads(self.request(method, url, payload=payload)[2] or b"null")

    # ---------------------------------------------------------------- releases

    def pages(self, url: str, key: str | None = None) -> Iterator[dict]:
        """Every item of a paginated list, following `Link: rel="next"` (at most 100 a page)."""
        while url:
            _, headers, body = self.request("GET", url)
            page = json.loads(body)
            yield from page[key] if key else page
            url = next(iter(re.findall(r'<([^>]+)>;\s*rel="next"', headers.get("Link", ""))), None)

    def releases(self) -> list[dict]:
        """Every release, drafts included."""
        return list(self.pages(f"repos/{self.repo}/releases?per_page=100"))

    def release(self, tag: str) -> dict | None:
        """The release of `tag`, drafts included (the by-tag endpoint does not see drafts)."""
        found = [r for r in self.releases() if r["tag_name"] == tag]
        if len(found) > 1:
            raise ClipOnnxError(f"{self.repo} has {len(found)} releases of {tag} (ids "
                                f"{', '.join(str(r['id']) for r in found)}); delete all but one, then re-run")
        return found[0] if found else None

    def found(self, url: str) -> dict | None:
        """GET `url` as JSON, or None where GitHub answers 404 (no such tag, no Latest release)."""
        try:
            return self.json("GET", url)
        except ClipOnnxError as error:
            if "answered 404" in str(error):
                return None
            raise

    def tag_exists(self, tag: str) -> bool:
        return self.found(f"repos/{self.repo}/git/ref/tags/{tag}") is not None

    def draft(self, tag: str, title: str, notes: str, require_tag: bool = True) -> dict:
        """The release of `tag`: the existing one (draft or published), or a new draft (of a tag GitHub
        must have, unless not `require_tag`: a draft never creates its tag, publishing would)."""
        release = self.release(tag)
        if release is None:
            if require_tag and not self.tag_exists(tag):
                raise ClipOnnxError(f"{self.repo} has no tag {tag}; push the tag first (the release never creates it)")
            release = self.json("POST", f"repos/{self.repo}/releases",
                                 {"tag_name": tag, "name": title, "body": notes, "draft": True})
        return release

    def assets(self, release: dict) -> list[dict]:
        """Every asset of `release`, paged: the release object's own `assets` list is not documented to
        hold them all."""
        return list(self.pages(f"repos/{self.repo}/releases/{release['id']}/assets?per_page=100"))

    def upload(self, release: dict, path: Path, name: str) -> dict:
        url = re.sub(r"\{.*\}$", "", release["upload_url"]) + f"?name={urllib.request.quote(name)}"
        with open(path, "rb") as f:
            return json.loads(self.request("POST", url, data=f, size=path.stat().st_size)[2])

    def delete_asset(self, asset: dict) -> None:
        self.request("DELETE", f"repos/{self.repo}/releases/assets/{asset['id']}")

    def edit(self, release: dict, **fields) -> dict:
        return self.json("PATCH", f"repos/{self.repo}/releases/{release['id']}", fields)

    # ---------------------------------------------------------------- a workflow run's artifacts

    def latest(self) -> str | None:
        """The tag of the release GitHub shows as Latest, if any."""
        latest = self.found(f"repos/{self.repo}/releases/latest")
        return latest["tag_name"] if latest else None

    def artifacts(self, run_id: int) -> list[dict]:
        listing = self.pages(f"repos/{self.repo}/actions/runs/{run_id}/artifacts?per_page=100", key="artifacts")
        return [a for a in listing if not a.get("expired")]

    def download(self, artifact: dict, target: Path) -> None:
        """The artifact's zip into `target`."""
        self._follow(artifact["archive_download_url"], target)

    def asset_bytes(self, asset: dict) -> bytes:
        """An asset's content, drafts' included (their download URLs need the API)."""
        return self._follow(f"repos/{self.repo}/releases/assets/{asset['id']}", accept="application/octet-stream")

    def _follow(self, url: str, target: Path | None = None, accept: str = "application/vnd.github+json") -> bytes:
        """GET `url`, into `target` or returned; GitHub redirects to its storage host, which gets a signed
        URL and no token."""
        status, headers, body = self.request("GET", url, accept=accept)
        source = (urllib.request.urlopen(urllib.request.Request(headers["Location"]), timeout=600)
                  if status in (301, 302, 307) else io.BytesIO(body))
        with source:
            if target is None:
                return source.read()
            with open(target, "wb") as f:
                shutil.copyfileobj(source, f, 1 << 24)
        return b""


def _message(body: str) -> str:
    try:
        return json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        return body.strip() or "no message"


def _rate_limit_wait(status: int, headers: Message, message: str, now: float, met: int) -> float | None:
    """Seconds to wait if the answer is a rate limit (the call was not made), else None. As GitHub's "Rate
    limits for the REST API" says: `retry-after` seconds; else, with `x-ratelimit-remaining: 0`, until the
    epoch second `x-ratelimit-reset`; else, for a secondary rate limit, a minute, longer each time."""
    if status not in (403, 429):
        return None
    if headers.get("retry-after", "").isdigit():
        return int(headers["retry-after"])
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset", "").isdigit():
        return max(int(headers["x-ratelimit-reset"]) - now, 0) + 1  # until after it
    if status == 429 or "rate limit" in message.lower():
        return 60 * 2 ** met
    return None


def _advice(status: int) -> str:
    return {401: "; the token is not valid: check GH_TOKEN",
            403: "; the token may not write releases: the job needs `permissions: contents: write`",
            }.get(status, "; re-run to resume" if status >= 500 else "")


def mismatches(existing: list[dict], wanted: dict[str, str], *, complete: bool = True) -> dict[str, str]:
    """Asset name -> how the `existing` assets (as GitHub's API describes them) differ from `wanted`
    (name -> SHA-256). With `complete`, assets that `wanted` does not name count too."""
    have = {asset["name"]: asset for asset in existing}
    wrong = {name: EXTRA for name in sorted(set(have) - set(wanted))} if complete else {}
    for name, digest in wanted.items():
        asset = have.get(name)
        if asset is None:
            wrong[name] = MISSING
        elif asset.get("state") != "uploaded":
            wrong[name] = "was not fully uploaded"
        elif asset.get("digest") != f"sha256:{digest}":
            wrong[name] = f"has digest {asset.get('digest')}, not sha256:{digest}"
    return wrong


def upload(github: GitHub, release: dict, assets: dict[str, tuple[Path, str]],
           log: Callable[[str], None] = print) -> dict:
    """Make `release` hold `assets` (name -> (file, SHA-256)); other assets are left as they are."""
    existing = github.assets(release)
    wrong = mismatches(existing, {n: digest for n, (_, digest) in assets.items()}, complete=False)
    if wrong and not release["draft"]:
        raise ClipOnnxError(f"the published release {release['tag_name']} differs from this one "
                            f"({first_problem(wrong)}); a published release is never altered: release a new version")
    by_name = {asset["name"]: asset for asset in existing}
    for name, reason in wrong.items():
        path = assets[name][0]
        if reason != MISSING:
            log(f"github: replacing {name}, which {reason}")
            github.delete_asset(by_name[name])
        log(f"github: uploading {name} ({path.stat().st_size / 1e6:.1f} MB)")
        github.upload(release, path, name)
    return github.release(release["tag_name"]) if wrong else release


def observed() -> dict:
    return json.loads(OBSERVED.read_text())


def observe_attempts(github: GitHub, run_id: int, attempt: int, prefix: str) -> dict:
    """Whether GitHub lists the artifacts of a run's earlier attempts beside attempt `attempt`'s own, each
    attempt having uploaded `<prefix><attempt>`: the record `OBSERVED` holds."""
    names = sorted(a["name"] for a in github.artifacts(run_id) if a["name"].startswith(prefix))
    attempts = {int(n[len(prefix):]) for n in names if n[len(prefix):].isdigit()}
    if attempt not in attempts:
        raise ClipOnnxError(f"run {run_id} lists no artifact {prefix}{attempt}; upload it before observing")
    return {"earlier_attempts_listed": any(a < attempt for a in attempts) if attempt > 1 else None,
            "observed": f"{github.repo} run {run_id}, attempt {attempt} (after \"Re-run all jobs\")"
                        if attempt > 1 else None,
            "listed": names}


def published_sums(github: GitHub, tag: str) -> bytes:
    """The `SHA256SUMS` of `tag`'s published release: what provenance is attested for. Read from the
    release itself, not from a run's artifact, so that a re-run of the attesting job alone finds it."""
    release = github.release(tag)
    if release is None or release["draft"]:
        raise ClipOnnxError(f"{github.repo} has no published release of {tag} "
                            f"({'a draft' if release else 'none'}); publish it first (re-run the publish job)")
    asset = next((a for a in github.assets(release) if a["name"] == "SHA256SUMS"), None)
    if asset is None:
        raise ClipOnnxError(f"the release {tag} has no SHA256SUMS asset; it was not published by this project")
    return github.asset_bytes(asset)


def finish(github: GitHub, tag: str, wanted: dict[str, str], notes: str, log: Callable[[str], None] = print, *,
           latest: bool = True) -> str:
    """Publish the draft of `tag` once it holds exactly `wanted` (name -> SHA-256); return its URL. GitHub
    makes a newly published release Latest unless told otherwise, so `latest` is always sent."""
    release = github.release(tag)
    if release is None:
        raise ClipOnnxError(f"{github.repo} has no release of {tag} to publish; re-run the whole publication")
    wrong = mismatches(github.assets(release), wanted)
    if wrong:
        state = "draft" if release["draft"] else "published release"
        raise ClipOnnxError(f"the {state} {tag} differs from what was staged ({first_problem(wrong)}); "
                            + ("delete the stray assets or the draft, then re-run" if release["draft"] else
                               "a published release is never altered: release a new version"))
    if release["draft"]:
        release = github.edit(release, body=notes, draft=False, make_latest="true" if latest else "false")
        log(f"github: published {github.repo} {tag} with {len(wanted)} assets"
            + ("" if latest else "; Latest stays on a higher version"))
    else:
        log(f"github: {github.repo} {tag} is already published with these {len(wanted)} assets; nothing to do")
    return release["html_url"]
