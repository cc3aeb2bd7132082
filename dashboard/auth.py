"""Who is using the dashboard: sign-in (Streamlit's own OpenID Connect), the reviewer's identity, and roles.

Sign-in is on exactly when ``.streamlit/secrets.toml`` has an ``[auth]`` section; then every page needs
it, and the reviewer is the signed-in identity: the ``email`` claim when the provider vouches for it
(``email_verified`` true), else the provider's issuer and subject, ``ISSUER#SUB``, which no one can choose
(an account may carry any unverified email, ``Boss@Example.org`` included). Off, the dashboard is one
person's session on this machine: they type a reviewer name and may do everything.

Roles (only with sign-in on) come from ``[ogdash]`` in secrets.toml, else from the environment:
``admins`` / ``$OGDASH_ADMINS`` may import decisions; ``reviewers`` / ``$OGDASH_REVIEWERS``, when given,
are the only ones who may review (admins always may). Lists compare exactly, as the identity is written.
"""
from __future__ import annotations

import os

import streamlit as st

from dashboard.escape import md


def _secrets_section(name: str) -> dict:
    if not st.secrets.load_if_toml_exists():  # no secrets file: no error box, just nothing configured
        return {}
    section = st.secrets.get(name)
    return dict(section) if section else {}


def sign_in_on() -> bool:
    """True when an ``[auth]`` section configures Streamlit's sign-in."""
    return bool(_secrets_section("auth"))


def signed_in() -> bool:
    return bool(st.user.get("is_logged_in"))


def locked() -> bool:
    """Sign-in is on and nobody is signed in: nothing but the sign-in screen may show."""
    return sign_in_on() and not signed_in()


def email_verified() -> bool:
    """Whether the provider vouches for the signed-in user's email (``email_verified``: true, or "true")."""
    flag = st.user.get("email_verified")
    return flag is True or (isinstance(flag, str) and flag.strip().lower() == "true")


def identity() -> str:
    """The signed-in user's verified email, else ``ISSUER#SUB`` (or the bare ``sub`` without an issuer);
    "" when nobody is signed in. An unverified email is never the identity: anyone can put any address on
    an account at many providers."""
    if not signed_in():
        return ""
    email = str(st.user.get("email") or "").strip()
    if email and email_verified():
        return email
    sub, iss = str(st.user.get("sub") or "").strip(), str(st.user.get("iss") or "").strip()
    return f"{iss}#{sub}" if sub and iss else sub


def unverified_email() -> str:
    """The email the provider sent without vouching for it ("" when there is none or it is verified): shown, never
    used as the identity."""
    email = str(st.user.get("email") or "").strip() if signed_in() else ""
    return "" if not email or email_verified() else email


def _listed(name: str) -> set[str]:
    value = _secrets_section("ogdash").get(name)
    if value is None:
        value = os.environ.get(f"OGDASH_{name.upper()}", "")
    if isinstance(value, str):
        value = value.split(",")
    return {str(v).strip() for v in value if str(v).strip()}  # exact: case included


def is_admin() -> bool:
    """Sign-in off: the one local user is. On: the identity is in the admins list."""
    if not sign_in_on():
        return True
    me = identity()
    return bool(me) and me in _listed("admins")


def may_review() -> bool:
    """Sign-in off: yes. On: signed in, and in the reviewers list when there is one (admins always)."""
    if not sign_in_on():
        return True
    me = identity()
    reviewers = _listed("reviewers")
    return bool(me) and (not reviewers or me in reviewers or is_admin())


# The address a signed-out visitor opened (a shared Review link, say) is kept in the browser tab while the
# provider signs them in: Streamlit's sign-in always comes back to the app's root. Same tab, same origin only.
LINK_KEY = "ogdash.link"
_KEEP_LINK = f"""<script>(() => {{
  const here = window.location.pathname + window.location.search;
  if (here.replace(/\\/+$/, '') !== '' || window.location.search) sessionStorage.setItem('{LINK_KEY}', here);
}})();</script>"""
_BACK_TO_LINK = f"""<script>(() => {{
  const kept = sessionStorage.getItem('{LINK_KEY}');
  sessionStorage.removeItem('{LINK_KEY}');
  if (!kept || !kept.startsWith('/') || kept.startsWith('//') || kept.startsWith('/\\\\')) return;
  const to = new URL(kept, window.location.origin);
  const here = window.location.pathname + window.location.search;
  if (to.origin === window.location.origin && to.pathname + to.search !== here)
    window.location.replace(to.pathname + to.search);
}})();</script>"""


def sign_in_gate() -> None:
    """With sign-in on and nobody signed in: draw only the sign-in screen and stop the run. The address opened is
    kept in the tab, and the first page after sign-in goes back to it (``back_to_link``)."""
    if not locked():
        return
    st.title("ogdash")
    st.markdown("This review dashboard is shared by a team. **Sign in** to see the data and record decisions.")
    st.button("Sign in", type="primary", on_click=st.login, icon=":material/login:")
    st.html(_KEEP_LINK, unsafe_allow_javascript=True)  # our own script: it reads the address, takes no input
    st.stop()


def back_to_link() -> None:
    """Once per browser session, signed in: open the address kept before sign-in, if any (same origin only)."""
    if not sign_in_on() or st.session_state.get("_link_checked"):
        return
    st.session_state["_link_checked"] = True
    st.html(_BACK_TO_LINK, unsafe_allow_javascript=True)


def who_box() -> None:
    """The sidebar's account lines: who is signed in and a sign-out button, or that this is a local session."""
    if sign_in_on():
        role = "admin" if is_admin() else ("reviewer" if may_review() else "viewer (not in the reviewers list)")
        st.markdown(f"Signed in as **{md(identity())}** · {role}")
        if unverified_email():
            st.caption(f"Your provider did not verify the email {md(unverified_email())}, so your sign-in is "
                       "known by the provider's account id above, not by that email.")
        st.button("Sign out", on_click=st.logout, icon=":material/logout:")
    else:
        st.caption("Single-user session on this machine: no sign-in, so anyone who reaches this address can "
                   "review. To share it with a team, turn on sign-in (README, \"Running it for a team\").")

