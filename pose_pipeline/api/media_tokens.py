"""Short-lived tokens for media a browser loads by URL (the viewer's <video> element cannot
send an ``Authorization`` header): ``POST /v1/jobs/{id}/media-token`` issues one with the
bearer token, ``GET /v1/jobs/{id}/video?media_token=...`` accepts it instead of the bearer.

A token is ``<expires_at>.<HMAC-SHA256(secret, scope:job_id:expires_at)>``: it names no user
and holds no bearer token, is good for one job's one scope until it expires, and is checked
without any shared state, so every ingress replica accepts the tokens of the others as long
as they share the secret. ``from_bearer_tokens`` derives the secret from the service's
``auth.tokens``: replicas share those already, and rotating them ends every media token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: One hour: a long video paused for a while still plays on; the viewer asks for a new
#: token before this one expires anyway.
DEFAULT_TTL_S = 3600.0
_CONTEXT = b"pose-pipeline media token v1\0"


@dataclass(frozen=True)
class MediaToken:
    token: str
    expires_at: float  # Unix time, seconds

    def to_dict(self) -> dict[str, object]:
        return {"token": self.token, "expires_at": self.expires_at}


class MediaTokens:
    def __init__(self, secret: bytes, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("a media token secret needs at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s
        self._clock = clock

    @classmethod
    def from_bearer_tokens(cls, tokens: Sequence[str], ttl_s: float = DEFAULT_TTL_S,
                           clock: Callable[[], float] = time.time) -> MediaTokens:
        """Secret derived from the bearer tokens; without any (no auth), a random one: the
        video is open then anyway, and the tokens only need to work on this replica."""
        if not tokens:
            return cls(os.urandom(32), ttl_s, clock)
        joined = b"\0".join(sorted(token.encode() for token in tokens))
        return cls(hashlib.sha256(_CONTEXT + joined).digest(), ttl_s, clock)

    def issue(self, job_id: str, scope: str = "video", not_after: float | None = None) -> MediaToken:
        """A token for ``scope`` of ``job_id``, expiring in ``ttl_s`` or at ``not_after``
        (e.g. the job's own ``expires_at``), whichever comes first."""
        expires = math.floor(self._clock() + self.ttl_s)
        if not_after is not None:
            expires = min(expires, math.floor(not_after))
        return MediaToken(f"{expires}.{self._mac(job_id, scope, expires)}", float(expires))

    def verify(self, token: str, job_id: str, scope: str = "video") -> bool:
        expires_text, _, mac = token.partition(".")
        # ASCII digits only ("²³".isdigit() is true, and int() refuses it), and the MAC compared
        # as bytes (compare_digest refuses text with other characters): hostile tokens fail
        # verification instead of the request.
        if not (expires_text.isascii() and expires_text.isdigit()) or not mac:
            return False
        expires = int(expires_text)
        if expires < self._clock():
            return False
        expected = self._mac(job_id, scope, expires).encode()
        return hmac.compare_digest(mac.encode("utf-8", "surrogateescape"), expected)

    def _mac(self, job_id: str, scope: str, expires: int) -> str:
        digest = hmac.new(self._secret, f"{scope}:{job_id}:{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
