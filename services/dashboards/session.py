"""The browser session's sign-in: where its token is kept, and signing out.

Streamlit keeps ``st.session_state`` per browser tab for as long as the tab
is open, and the pages keep what they read there too (the lead hub's events,
which include events the feed sends to the signed-in agent alone). Signing
out, or a token that expired, therefore clears the whole session, not only
the token: whoever signs in next in that tab starts from nothing.
"""

from __future__ import annotations

import streamlit as st

TOKEN_KEY = "dashboards_token"  # noqa: S105 - a session-state key, not a secret


def signed_in_token() -> str | None:
    """The token this session signed in with, if it is signed in."""
    token = st.session_state.get(TOKEN_KEY)
    return token if isinstance(token, str) else None


def sign_in(token: str) -> None:
    """Start a fresh session for ``token`` (already verified)."""
    st.session_state.clear()
    st.session_state[TOKEN_KEY] = token


def sign_out() -> None:
    """Forget the token and everything the pages kept for its user.

    Also the Sign out button's ``on_click``: a callback runs before whichever
    run comes next, even a self-refreshing fragment's, which would otherwise
    swallow the click (the lead hub refreshes every few seconds).
    """
    st.session_state.clear()
