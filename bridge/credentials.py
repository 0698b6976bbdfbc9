"""API credentials that cannot leak by accident (SPEC §7).

A :class:`Secret` holds an API key or secret. Everything that turns an object into text
(``str``, ``repr``, f-strings, ``%`` formatting, ``logging``, dataclass reprs, tracebacks
that print locals) sees ``***``; the value comes out only through :meth:`Secret.reveal`,
which the account core calls in exactly one place: when it signs and sends the ``auth``
event. A Secret refuses to be pickled or compared with a plain string, so that it is never
written somewhere by a serializer or matched in a log filter.

:func:`fingerprint` names a key without revealing it (the nonce key in Redis, log lines).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NoReturn

__all__ = ["MASK", "Secret", "fingerprint"]

MASK = "***"


class Secret:
    """A credential whose text form is always ``***``.

    >>> key = Secret("abc")
    >>> str(key), repr(key), f"{key}", key.reveal()
    ('***', '***', '***', 'abc')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The credential itself: only for signing and for the ``auth`` event."""
        return self._value

    def __repr__(self) -> str:
        return MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(fingerprint(self))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret is not serialisable; pass it by reference, never by value")


def fingerprint(key: Secret) -> str:
    """The first 16 hex digits of SHA-256 of the key: names it, reveals nothing usable."""
    return hashlib.sha256(key.reveal().encode()).hexdigest()[:16]
