"""Tokens: who a socket or request is (JWTs, PyJWT), the admin token, and invite tokens.

Accepted: HS256 tokens signed with JWT_SECRET (the original backend's own: issuer
`prepmate-api`, audience `prepmate-client`, the user id in `userId`), and RS256/ES256 tokens
whose keys JWT_JWKS_URL publishes. `exp` is required; `iss` and `aud` are checked when
JWT_ISSUER and JWT_AUDIENCE are set. The user id is the `userId` claim, else `sub`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import warnings
from datetime import UTC, datetime
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from app.config import Settings
from app.domain.access import Identity, Invite, given_role
from app.domain.errors import Unauthorized

log = logging.getLogger(__name__)
ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"]
INVITE_ISSUER = "codecollab-invite"
MAX_TOKEN_CHARS = 8192


class Tokens:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.secret = settings.jwt_secret
        self.invite_key = settings.invite_secret or settings.jwt_secret or ""
        self.jwks = (
            jwt.PyJWKClient(
                settings.jwt_jwks_url,
                cache_keys=True,
                lifespan=settings.jwt_jwks_cache_seconds,
                timeout=5,
            )
            if settings.jwt_jwks_url
            else None
        )
        if self.secret is not None and len(self.secret.encode()) < 32:
            # The original backend's secrets may be short; accepted, but said.
            log.warning("JWT_SECRET is shorter than 32 bytes: use a longer one when you can")
        warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)

    # -- identities ----------------------------------------------------------------------------

    async def identity(self, token: str) -> Identity:
        """The user the token proves. Unauthorized (code `token_expired` or `invalid_token`)
        when it does not."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("The token is too long", "invalid_token")
        try:
            header = jwt.get_unverified_header(token)
            key: Any
            if header.get("alg") == "HS256" and self.secret is not None:
                key, algorithms = self.secret, ["HS256"]
            elif self.jwks is not None and header.get("alg") in ASYMMETRIC:
                signing = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
                key, algorithms = signing.key, [str(header["alg"])]
            else:
                raise Unauthorized("The token's algorithm is not accepted", "invalid_token")
            claims = self._decode(token, key, algorithms)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired", "token_expired") from None
        except jwt.PyJWKClientError as error:
            raise Unauthorized(f"The token's key is unknown: {error}", "invalid_token") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"The token is not valid: {error}", "invalid_token") from None
        user_id = claims.get("userId", claims.get("sub"))
        limit = self.settings.max_user_id_length
        if not isinstance(user_id, str) or not user_id or len(user_id) > limit:
            raise Unauthorized("The token names no user (userId or sub)", "invalid_token")
        return Identity(user_id, expires_at=float(claims["exp"]))

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> dict[str, Any]:
        settings = self.settings
        return jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["exp"], "verify_aud": settings.jwt_audience is not None},
        )

    def admin(self, token: str) -> bool:
        expected = self.settings.admin_token
        return expected is not None and hmac.compare_digest(token.encode(), expected.encode())

    # -- invites -------------------------------------------------------------------------------

    def sign_invite(self, invite: Invite) -> str:
        claims = {
            "iss": INVITE_ISSUER,
            "jti": invite.invite_id,
            "room": invite.room_id,
            "role": invite.role,
            "exp": int(invite.expires_at.timestamp()),
        }
        return jwt.encode(claims, self.invite_key, algorithm="HS256")

    def read_invite(self, token: str, room_id: str) -> Invite:
        """The invite the token is, for `room_id`. Unauthorized (`invalid_invite`) when it
        is not one, is for another room, or has expired."""
        try:
            claims = jwt.decode(
                token[:MAX_TOKEN_CHARS],
                self.invite_key,
                algorithms=["HS256"],
                issuer=INVITE_ISSUER,
                options={"require": ["exp", "jti", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The invite has expired", "invalid_invite") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("The invite is not valid", "invalid_invite") from None
        role = given_role(claims.get("role"))
        if claims.get("room") != room_id or role is None:
            raise Unauthorized("The invite is not for this room", "invalid_invite")
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        return Invite(str(claims["jti"]), room_id, role, expires)
