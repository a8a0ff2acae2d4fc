"""Who is asking: HS256 JWTs signed by the server, from a header, a cookie or a parameter.

``Authorization: Bearer <jwt>`` first, then the ``qs_token`` cookie, then the ``token`` query
parameter (EventSource cannot set headers). ``sub`` is the user id. The auth context that read
and write rules see is ``{"user_id": sub, **other claims}``, with a decimal ``sub`` given as an
integer so that rules can compare it with integer id columns (``creator_id``).

Anonymous mode (explicit, for demos) accepts requests without a token as the user ``None``;
a token that is present is still verified.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from starlette.requests import HTTPConnection

from .errors import Unauthorized

_REGISTERED = frozenset({"sub", "exp", "iat", "nbf", "iss", "aud", "jti"})


@dataclass(frozen=True)
class Principal:
    user_id: str | None
    claims: Mapping[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        uid: Any = self.user_id
        if isinstance(uid, str) and uid.isdigit() and len(uid) < 19:
            uid = int(uid)
        extra = {k: v for k, v in self.claims.items() if k not in _REGISTERED}
        return {**extra, "user_id": uid}


ANONYMOUS = Principal(None)


def make_token(secret: str, user_id: str | int, *, ttl: float = 3600, **claims: Any) -> str:
    """An HS256 token for ``user_id`` (for tests, the CLI and an app's login endpoint)."""
    now = int(time.time())
    payload = {**claims, "sub": str(user_id), "iat": now, "exp": now + int(ttl)}
    return jwt.encode(payload, secret, algorithm="HS256")


class Authenticator:
    def __init__(self, secret: str | None, *, anonymous: bool = False) -> None:
        if secret is None and not anonymous:
            raise ValueError("A server needs a token secret unless it runs in anonymous mode.")
        self.secret = secret
        self.anonymous = anonymous

    def authenticate(self, conn: HTTPConnection) -> Principal:
        token = _token(conn)
        if token is None:
            if self.anonymous:
                return ANONYMOUS
            raise Unauthorized(
                "This server needs a token: send 'Authorization: Bearer <token>', the "
                "'qs_token' cookie or the 'token' query parameter."
            )
        if self.secret is None:
            raise Unauthorized("This anonymous server does not accept tokens.")
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"], options={"require": ["sub"]}
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired; sign in again.") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"The token is not valid: {exc}.") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise Unauthorized("The token's 'sub' (the user id) must be a non-empty string.")
        return Principal(sub, claims)


def _token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        return value.strip()
    return conn.cookies.get("qs_token") or conn.query_params.get("token") or None
