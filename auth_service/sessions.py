"""Sign-up, login, logout and session authentication: the password half of auth.

Session tokens are opaque random strings (`ses_...`, 256 bits) with a checksum;
only their keyed hash is stored, so, like API keys, a leaked table gives no
usable token. They expire after a configurable time and logout revokes them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from auth_service.passwords import Passwords
from auth_service.store import AuthStore, DuplicateEmail
from lipsync_common import credentials

log = logging.getLogger(__name__)


class SignupRefused(enum.Enum):
    CLOSED = "sign-up is closed on this server"
    EMAIL_TAKEN = "email already registered"


class SignupError(Exception):
    def __init__(self, reason: SignupRefused) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class Session:
    token: str
    account_id: str
    expires_at: float


def hash_token(pepper: bytes, token: str) -> str:
    # Domain-separated from key secrets, though both are random enough alone.
    return hmac.new(pepper, b"session\n" + token.encode(), hashlib.sha256).hexdigest()


def session_id(token_hash: str) -> str:
    """A public name of a session (for rate limits and logs), from its hash."""
    return "ses_" + token_hash[:16]


class Sessions:
    def __init__(
        self,
        store: AuthStore,
        passwords: Passwords,
        pepper: bytes,
        ttl_s: float,
        open_signup: bool,
    ) -> None:
        self._store = store
        self._passwords = passwords
        self._pepper = pepper
        self._ttl_s = ttl_s
        self._open_signup = open_signup

    async def signup(self, email: str, password: str) -> str:
        """Open an account; `email` normalised, `password` already checked."""
        if not self._open_signup:
            raise SignupError(SignupRefused.CLOSED)
        # Cheap duplicate check first, so a taken email costs no hashing.
        if await self._store.find_login(email) is not None:
            raise SignupError(SignupRefused.EMAIL_TAKEN)
        password_hash = await self._passwords.hash(password)
        try:
            account = await self._store.create_account(email, password_hash)
        except DuplicateEmail:
            raise SignupError(SignupRefused.EMAIL_TAKEN) from None
        log.info("account signed up", extra={"fields": {"account_id": account.id}})
        return account.id

    async def login(self, email: str, password: str) -> Session | None:
        """A new session, or None; unknown email and wrong password take equally long."""
        found = await self._store.find_login(email)
        account, stored_hash = found if found is not None else (None, None)
        if not await self._passwords.verify(stored_hash, password):
            return None
        if account is None or account.disabled:
            return None
        token = credentials.new_session_token()
        expires_at = time.time() + self._ttl_s
        await self._store.create_session(hash_token(self._pepper, token), account.id, expires_at)
        log.info("logged in", extra={"fields": {"account_id": account.id}})
        return Session(token=token, account_id=account.id, expires_at=expires_at)

    async def logout(self, token: str) -> None:
        if credentials.is_session_token(token):
            await self._store.revoke_session(hash_token(self._pepper, token))

    async def authenticate(self, token: str) -> tuple[str, str] | None:
        """(account_id, session_id) of a live session token, else None."""
        if not credentials.is_session_token(token):
            return None
        token_hash = hash_token(self._pepper, token)
        # Read on every call, never cached here: logout works at once.
        found = await self._store.find_session(token_hash)
        if (
            found is None
            or found.revoked
            or found.account_disabled
            or found.expires_at <= time.time()
        ):
            return None
        return found.account_id, session_id(token_hash)
