"""The dashboards: one Streamlit multipage app behind one sign-in.

``enterprisehub serve dashboards`` runs this script. A user signs in with a
platform JWT carrying the ``dashboards:view`` scope (``enterprisehub token
...``); it is verified with the same ``TokenVerifier`` as every service, and
the tenant comes only from the verified token, never from anything typed. A
token of another scope (an agent's feed token, the CRM integration's) is
refused: the pages show every agent's coaching and the tenant's ROI. The token is checked again on
every rerun, so an expired or revoked one signs the user out (a self-refreshing page
asks for a full rerun once its token is gone or expired); signing out clears
the whole browser session (``services/dashboards/session.py``). Each page then receives a
`PageContext` for that tenant.

Adding a page is one line in ``PAGES`` (see ``services/dashboards/views``). The
page modules are not in a ``pages/`` folder: beside the script, one puts
Streamlit in its first multipage mode, where ``/coaching`` ran
``pages/coaching.py`` in place of this app (a blank page, no sign-in) and the
sidebar listed every module.
"""

from __future__ import annotations

from types import ModuleType

import streamlit as st

from services.common.auth import AuthError, Principal, TokenVerifier
from services.common.database import DatabaseUnavailable
from services.common.scopes import DASHBOARDS_VIEW
from services.dashboards import process
from services.dashboards.config import DashboardSettings
from services.dashboards.context import AsyncRunner, PageContext
from services.dashboards.session import sign_in, sign_out, signed_in_token
from services.dashboards.views import coaching, lead_hub, property, roi

# Every page, in navigation order; each defines TITLE, ICON and render(ctx).
# (A comment, not a string: Streamlit's "magic" would print a bare string on every page.)
PAGES: tuple[ModuleType, ...] = (lead_hub, property, coaching, roi)


def _release_runner(runner: AsyncRunner) -> None:
    # A runner the script built (under AppTest) stops with its cache entry: its
    # revocation refresher would otherwise outlive the database it reads.
    if not process.owns(runner):
        runner.close()


# Cached per process and keyed by the fingerprint (Streamlit does not hash
# arguments whose names start with "_"), so all sessions share one pool and
# one verifier, and other settings (another test, a key rotation) get new ones.
# Served, the process started both before any session (``process.start``).
@st.cache_resource(show_spinner=False, on_release=_release_runner)
def _runner(fingerprint: str, _settings: DashboardSettings) -> AsyncRunner:
    started = process.started(fingerprint)
    return started.runner if started is not None else AsyncRunner(_settings)


@st.cache_resource(show_spinner=False)
def _verifier(fingerprint: str, _settings: DashboardSettings) -> TokenVerifier:
    started = process.started(fingerprint)
    if started is not None:
        # The list the process has kept current since it started, and exports.
        return TokenVerifier.from_settings(_settings, revocations=started.revocations)
    verifier = TokenVerifier.from_settings(_settings)
    # Its revocations are read on the runner's loop: a revoked token signs its user out.
    _runner(fingerprint, _settings).keep_revocations_current(verifier.revocations)
    return verifier


def _signed_in(verifier: TokenVerifier) -> tuple[Principal, str] | None:
    token = signed_in_token()
    if token is None:
        return None
    try:
        return verifier.verify(token).require(DASHBOARDS_VIEW), token
    except AuthError as exc:
        sign_out()
        st.warning(f"Signed out: {exc.detail}.")
        return None


def _sign_in(verifier: TokenVerifier) -> None:
    st.title("EnterpriseHub dashboards")
    with st.form("sign_in"):
        token = st.text_input(
            "Access token",
            type="password",
            help=(
                "A platform JWT with the dashboards:view scope (and feed:read for the live "
                "lead hub): enterprisehub token --tenant T --subject S "
                "--scope dashboards:view --scope feed:read --ttl 12h"
            ),
        )
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    try:
        verifier.verify(token.strip()).require(DASHBOARDS_VIEW)
    except AuthError as exc:
        st.error(f"Sign-in refused: {exc.detail} ({exc.reason}).")
        return
    sign_in(token.strip())
    st.rerun()


def _page(module: ModuleType, ctx: PageContext) -> st.Page:
    def draw() -> None:
        # An outage is the page's to explain: left to Streamlit it drew the
        # exception with its traceback (the server's paths and code) to the user.
        try:
            module.render(ctx)
        except DatabaseUnavailable as exc:
            st.error(
                f"This page cannot read its data right now: {exc.reason}. "
                "It is not your input; reload the page in a minute."
            )

    return st.Page(draw, title=module.TITLE, icon=module.ICON, url_path=_slug(module))


def _slug(module: ModuleType) -> str:
    """A page's address: its module's name (``/coaching``, ``/roi``)."""
    return module.__name__.rsplit(".", 1)[-1]


def main() -> None:
    """Sign in, then show the pages of the signed-in tenant."""
    st.set_page_config(page_title="EnterpriseHub", page_icon="🏠", layout="wide")
    settings = DashboardSettings.from_env()
    key = process.fingerprint(settings)
    verifier = _verifier(key, settings)
    signed_in = _signed_in(verifier)
    if signed_in is None:
        # Every page's address shows the sign-in form, unlisted. A page's own
        # link opens a new browser session, signed out: knowing only the form,
        # the app answered "Page not found". Once signed in, the rerun stays on
        # the address (Streamlit names a page by a hash of its url_path), which
        # is then the real page.
        def sign_in_page() -> None:
            _sign_in(verifier)

        addresses = [
            st.Page(sign_in_page, title=module.TITLE, url_path=_slug(module)) for module in PAGES
        ]
        st.navigation(
            [st.Page(sign_in_page, title="Sign in", default=True), *addresses],
            position="hidden",
        ).run()
        return
    principal, token = signed_in
    ctx = PageContext(
        tenant_id=principal.tenant_id,
        token=token,
        expires_at=principal.expires_at,
        settings=settings,
        runner=_runner(key, settings),
    )
    with st.sidebar:
        st.caption(f"Tenant **{principal.tenant_id}**")
        # The subject is whatever the token's minter wrote (``enterprisehub token
        # --subject``), not a validated id: in markdown "[Reset your
        # password](http://...)" was a link, and escaping still leaves a bare
        # URL linked. Plain text shows it as written.
        st.text(principal.subject)
        st.button("Sign out", on_click=sign_out)
    st.navigation([_page(module, ctx) for module in PAGES]).run()


if __name__ == "__main__":
    main()
