"""OIDC id tokens as the loopback GitHub mints them and the loopback Hub checks them: JWTs (RFC 7519)
with GitHub's issuer and claims. GitHub signs with RS256 and publishes its keys (JWKS); the doubles share
an HMAC key instead (HS256), which keeps the checks that decide -- signature, issuer, audience, expiry,
claims -- without a key server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

ISSUER = "https://token.actions.githubusercontent.com"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict, key: bytes, lifetime: int = 300) -> str:
    """A JWT of `claims` plus `iss`, `iat` and `exp` (GitHub's id tokens live about five minutes)."""
    now = int(time.time())
    body = {"iss": ISSUER, "iat": now, "nbf": now, "exp": now + lifetime, **claims}
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + _b64(json.dumps(body).encode())
    return head + "." + _b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


def verify(token: str, key: bytes, audience: str) -> dict:
    """The claims of `token`; ValueError naming what is wrong when it is not signed by `key`, not GitHub's,
    expired, or for another audience."""
    try:
        head, body, signature = token.split(".")
        claims = json.loads(_unb64(body))
    except ValueError:
        raise ValueError("the subject token is not a JWT") from None
    if not hmac.compare_digest(_unb64(signature), hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()):
        raise ValueError("the subject token's signature does not verify")
    if claims.get("iss") != ISSUER:
        raise ValueError(f"the subject token's issuer {claims.get('iss')!r} is not trusted")
    if claims.get("aud") != audience:
        raise ValueError(f"the subject token's audience {claims.get('aud')!r} is not {audience}")
    if claims.get("exp", 0) < time.time():
        raise ValueError("the subject token has expired")
    return claims
