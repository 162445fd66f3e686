"""A caller's number as a keyed hash: how returning callers are recognized without keeping the
number. HMAC-SHA256 with a server secret, so the hash cannot be reversed by hashing every
possible number (a plain hash of a ten-digit number can); no key, no hash.

The key is ``IVR_RETURNING_CALLER_KEY``, or else one derived from ``IVR_AUDIT_KEY`` (an HMAC of
a fixed label, so the two keys are never the same bytes). The number is reduced to its digits
first, so ``+1 555-0100`` and ``15550100`` are the same caller; a number with fewer than
``MIN_DIGITS`` digits (anonymous, withheld, unknown) is nobody.
"""

from __future__ import annotations

import hashlib
import hmac

MIN_DIGITS = 3
_DERIVE_LABEL = b"ivr-server returning caller id v1"


def caller_id_key(own: bytes | None, audit_key: bytes | None) -> bytes | None:
    """The key caller numbers are hashed with: ``own`` if set, else one derived from the audit
    key, else None (returning callers are off)."""
    if own:
        return own
    if audit_key:
        return hmac.new(audit_key, _DERIVE_LABEL, hashlib.sha256).digest()
    return None


def caller_hash(number: str | None, key: bytes | None) -> str | None:
    """64 hex digits identifying the caller to this server only; None without a key or a number."""
    digits = "".join(ch for ch in number or "" if ch.isascii() and ch.isdigit())
    if not key or len(digits) < MIN_DIGITS:
        return None
    return hmac.new(key, digits.encode(), hashlib.sha256).hexdigest()
