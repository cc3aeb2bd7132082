"""Sign-in and roles under AppTest: the sign-in screen, the reviewer's identity, who may review and import."""
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT

AUTH = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "ogdash", "client_secret": "s", "server_metadata_url": "http://localhost:1/.well-known/x"}


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    import streamlit as st

    st.cache_resource.clear()
    monkeypatch.setenv("OGDASH_DECISIONS", str(tmp_path / "decisions.sqlite"))
    monkeypatch.setenv("OGDASH_DATA_ROOT", str(tmp_path))
    for name in ("OGDASH_ADMINS", "OGDASH_REVIEWERS"):
        monkeypatch.delenv(name, raising=False)


def app(user=None, ogdash=None):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.secrets["auth"] = AUTH
    if ogdash is not None:
        at.secrets["ogdash"] = ogdash
    at.user = user if user is not None else {"is_logged_in": False}
    return at


def text(at) -> str:
    return " ".join(m.value for m in at.markdown) + " " + " ".join(c.value for c in at.caption)


def test_signed_out_sees_only_the_sign_in_screen():
    at = app().run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert [t.value for t in at.title] == ["ogdash"]
    assert "Data:" not in text(at) and not at.sidebar.markdown and not at.dataframe


def test_signed_in_reviewer_is_the_identity_and_roles_apply(monkeypatch):
    at = app({"is_logged_in": True, "email": "ann@example.org", "email_verified": True, "sub": "1"},
             {"admins": ["Boss@example.org"]}).run()
    assert not at.exception
    assert "Signed in as **ann\\@example\\.org** · reviewer" in text(at)
    assert "Sign out" in [b.label for b in at.sidebar.button]

    from dashboard import auth

    iss = "https://id.example.org"
    with monkeypatch.context() as m:  # the module's answers for one signed-in user, without a page around them
        m.setattr(auth, "sign_in_on", lambda: True)
        for claims, admins, reviewers, expect in [
            ({"email": "ann@x", "email_verified": True}, "", "", ("ann@x", False, True)),
            ({"email": "ann@x", "email_verified": "true"}, "", "", ("ann@x", False, True)),  # a provider's string
            ({"sub": "42", "iss": iss}, "", "", (f"{iss}#42", False, True)),  # no email: issuer and subject
            ({"sub": "42"}, "", "", ("42", False, True)),
            ({"email": "Boss@x", "email_verified": True}, "Boss@x", "ann@x", ("Boss@x", True, True)),  # admins review
            ({"email": "Boss@x", "email_verified": True}, "boss@x", "", ("Boss@x", False, True)),  # compared exactly
            # an unverified email is not the identity: the account is known by issuer and subject
            ({"email": "boss@x", "email_verified": False, "sub": "7", "iss": iss}, "boss@x", "",
             (f"{iss}#7", False, True)),
            ({"email": "boss@x", "sub": "7", "iss": iss}, "boss@x", "", (f"{iss}#7", False, True)),  # no claim at all
            ({"email": "eve@x", "email_verified": True}, "boss@x", "ann@x, bob@x", ("eve@x", False, False)),
        ]:
            m.setattr(auth.st, "user", {"is_logged_in": True, **claims})
            m.setattr(auth, "_secrets_section", lambda name: {})
            m.setenv("OGDASH_ADMINS", admins)
            m.setenv("OGDASH_REVIEWERS", reviewers)
            assert (auth.identity(), auth.is_admin(), auth.may_review()) == expect, claims


def test_without_sign_in_the_sidebar_says_single_user():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180).run()
    assert not at.exception
    assert "Single-user session on this machine" in text(at)
    assert "Sign in" not in [b.label for b in at.button]
