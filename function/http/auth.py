"""API keys: the edge's, checked before a request reaches the core (which never sees a header or a key)."""

from __future__ import annotations

import hmac

from ..errors import Unauthorized


class ApiKeys:
    """The keys predict calls need (API_KEYS, API_KEYS_FILE); with none, every call is let in."""

    def __init__(self, keys: tuple[str, ...]):
        self._keys = tuple(key.encode() for key in keys)

    def check(self, given: str | None) -> None:
        if not self._keys:
            return
        given_bytes = (given or "").encode()
        # Compare against every key, always, so timing says nothing about which key or how much matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(key, given_bytes)
        if not given or not matched:
            raise Unauthorized("Unauthorized: send a valid API key as 'Authorization: Bearer KEY' or 'x-api-key: KEY'")
