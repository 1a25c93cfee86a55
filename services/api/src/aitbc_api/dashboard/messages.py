"""The API's error codes as sentences a person understands, with what to do next."""

from __future__ import annotations

from aitbc_contracts.messages import Code
from aitbc_gate.errors import ApiError

# A lost or revoked master key: what an operator runs to give the account a new one.
RECOVERY = (
    "Ask an operator for a new master key: they run `aitbc accounts new-master-key` with your "
    "account id (acc_…), which revokes the old key and shows the new one once."
)

# What a person is told for each code the API answers with. The code itself is shown too,
# in small print, so that a support request can name it.
MESSAGES = {
    Code.MISSING_API_KEY: "Enter your master key.",
    Code.INVALID_API_KEY: (
        "That key was not recognised. Check that you pasted the whole master key: it starts "
        "with aitbc_ and is 55 characters long."
    ),
    Code.API_KEY_REVOKED: "That key has been revoked and can no longer be used.",
    Code.API_KEY_EXPIRED: "That key has expired and can no longer be used.",
    Code.FORBIDDEN: "You are not allowed to do that.",
    Code.NOT_FOUND: "There is no such key in your account.",
    Code.CONFLICT: "That key has been revoked, so it cannot be changed any more.",
    Code.VALIDATION_ERROR: "Some of what you entered is not valid.",
    Code.METHOD_NOT_ALLOWED: "That page cannot be used this way.",
    Code.RATE_LIMIT_EXCEEDED: (
        "You have reached your plan's limit of requests per minute. Dashboard pages count "
        "like API calls."
    ),
    Code.TOO_MANY_INVALID_KEYS: (
        "Too many wrong keys were entered from your network. Wait a minute, then try again."
    ),
    Code.SERVICE_UNAVAILABLE: (
        "Part of the service is unavailable right now. Please try again in a moment; if you "
        "were changing a key, check the list of keys first."
    ),
    Code.TOO_MANY_SIGNUPS: (
        "Too many accounts were made from your network, or by everyone just now."
    ),
    Code.TOO_MANY_SIGN_INS: (
        "Too many sign-ins were tried from your network, or by everyone just now."
    ),
    Code.REQUEST_TOO_LARGE: (
        "Your browser sent more than this site accepts, most likely too many cookies. Clear "
        "this site's cookies, then try again."
    ),
    Code.PAYLOAD_TOO_LARGE: "What you sent is larger than this site accepts.",
    Code.INTERNAL_ERROR: "Something went wrong on our side. Please try again.",
    Code.TOO_MANY_KEYS: (
        "Your account holds as many keys as it may. Revoke one you no longer use, then try again."
    ),
}

# Sign-in has its own wording: the person typed a key, and it is theirs that failed.
SIGN_IN = {
    **MESSAGES,
    Code.API_KEY_REVOKED: f"That master key has been revoked. {RECOVERY}",
    Code.API_KEY_EXPIRED: f"That master key has expired. {RECOVERY}",
    Code.FORBIDDEN: (
        "That is an API key, not a master key. Sign in with the master key you were shown "
        "when you signed up."
    ),
    Code.MASTER_KEY_IN_GRACE: (
        "That master key was replaced by a new one. It keeps calling the API until its grace "
        "period ends, but cannot sign in or manage keys: sign in with the new master key."
    ),
}

# Why a session ended, by the code its master key's re-check gave (for the sign-in page).
ENDED = {
    "signed-out": "You have signed out.",
    "expired": "Your session has ended. Please sign in again.",
    Code.API_KEY_REVOKED: (
        f"Your master key has been revoked, so you have been signed out. {RECOVERY}"
    ),
    Code.API_KEY_EXPIRED: f"Your master key has expired, so you have been signed out. {RECOVERY}",
    Code.INVALID_API_KEY: (
        "Your master key was regenerated, so you have been signed out. Sign in with the new one."
    ),
    Code.MASTER_KEY_IN_GRACE: (
        "Your master key was regenerated, so you have been signed out: the old one only calls "
        "the API until its grace period ends. Sign in with the new one."
    ),
}

# Codes whose wait (Retry-After) is told.
_WAIT = frozenset({Code.RATE_LIMIT_EXCEEDED, Code.TOO_MANY_SIGNUPS, Code.TOO_MANY_SIGN_INS})

# Codes whose own message (from the keys service) says usefully what was wrong.
_DETAILED = frozenset(
    {
        Code.VALIDATION_ERROR,
        Code.CONFLICT,
        Code.FORBIDDEN,
        Code.RATE_LIMIT_EXCEEDED,
        Code.REQUEST_TOO_LARGE,
        Code.TOO_MANY_KEYS,
    }
)


def explain(error: ApiError, messages: dict[str, str] = MESSAGES) -> tuple[str, str]:
    """(sentence, detail) for an error: the detail is the service's own words, where useful."""
    sentence = messages.get(error.code, MESSAGES[Code.INTERNAL_ERROR])
    if error.code in _WAIT and "Retry-After" in error.headers:
        sentence += f" Try again in {error.headers['Retry-After']} seconds."
    detail = error.message if error.code in _DETAILED else ""
    return sentence, detail
