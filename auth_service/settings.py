"""auth_service configuration, from environment variables only."""

from __future__ import annotations

from dataclasses import dataclass

from lipsync_common.config import env_bool, env_float

DEFAULT_SESSION_TTL_S = 30 * 24 * 3600.0


@dataclass(frozen=True)
class AuthSettings:
    # Operators turn self-serve sign-up off to run an invitation-only service;
    # accounts are then opened with `lipsyncctl account create`.
    open_signup: bool = True
    # How long a session token from login works unless logged out earlier.
    session_ttl_s: float = DEFAULT_SESSION_TTL_S

    @classmethod
    def from_env(cls) -> AuthSettings:
        return cls(
            open_signup=env_bool("LIPSYNC_OPEN_SIGNUP", True),
            session_ttl_s=env_float("LIPSYNC_SESSION_TTL_S", DEFAULT_SESSION_TTL_S),
        )
