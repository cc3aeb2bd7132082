"""A review team in real browsers: sign-in through a real OpenID Connect provider (oidc-provider-mock), two
reviewers at once, a signed-out visitor who sees only the sign-in screen and may not upload, and an account
whose email the provider did not verify (known by its account, never by that email)."""
import json
import re
import secrets
import sqlite3
import urllib.request

import pytest
from conftest import _free_port, serve_app, settle, shot
from playwright.sync_api import expect
from test_browser import click, go_to, open_page

oidc_provider_mock = pytest.importorskip("oidc_provider_mock")
pytest.importorskip("authlib")  # what st.login needs


@pytest.fixture(scope="module")
def oidc():
    """An OpenID Connect provider on a free loopback port; any client id is accepted, any subject may sign in."""
    with oidc_provider_mock.run_server_in_thread(port=_free_port()) as server:
        yield f"http://localhost:{server.server_port}"


@pytest.fixture(scope="module")
def team(oidc, tmp_path_factory):
    """The dashboard with sign-in on: its own secrets.toml pointing at the provider; yields (url, decisions file)."""
    home = tmp_path_factory.mktemp("team")
    port = _free_port()
    (home / "secrets.toml").write_text(f'''
[auth]
redirect_uri = "http://localhost:{port}/oauth2callback"
cookie_secret = "{secrets.token_hex(32)}"
client_id = "ogdash-test"
client_secret = "{secrets.token_hex(16)}"
server_metadata_url = "{oidc}/.well-known/openid-configuration"

[ogdash]
admins = ["boss@example.org"]
''')
    for url in serve_app(home, {}, ["--secrets.files", str(home / "secrets.toml")], port=port, host="localhost"):
        yield url, home / "decisions.sqlite", oidc


def account(oidc, sub, claims):
    """Set what the provider says about ``sub`` (its own API): the claims its ID token will carry."""
    request = urllib.request.Request(f"{oidc}/users/{sub}", data=json.dumps(claims).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
    assert urllib.request.urlopen(request, timeout=10).status == 204


def new_page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    return page


def sign_in(browser, team, who, claims=None, shown=None):
    """A fresh browser that signs in as account ``who`` on the provider's form; by default the provider vouches
    for the email ``who`` (email_verified), and the sidebar shows ``shown`` (default: ``who``)."""
    url, _, oidc = team
    account(oidc, who, {"email": who, "email_verified": True} if claims is None else claims)
    page = new_page(browser)
    page.goto(url)
    settle(page)
    page.get_by_role("button", name="Sign in").click()
    page.locator('input[name="sub"]').fill(who)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(re.escape(url)))
    settle(page)
    expect(page.get_by_test_id("stSidebar")).to_contain_text(f"Signed in as {shown or who}")
    return page


def test_signed_out_sees_only_the_sign_in_screen(browser, team):
    url, _, _ = team
    page = new_page(browser)
    page.goto(f"{url}/review")
    settle(page)
    page.get_by_role("button", name="Sign in").wait_for()
    main = page.get_by_test_id("stMain").inner_text()
    assert "Sign in" in main and "Review" not in main and "digits" not in main
    assert page.get_by_test_id("stSidebarNav").count() == 0  # not even the page list
    assert "Data:" not in page.locator("body").inner_text()
    shot(page, "team_signed_out")
    page.context.close()


def test_two_reviewers_each_decision_carries_its_identity(browser, team):
    url, db, _ = team
    ann = sign_in(browser, team, "ann@example.org")
    open_page(ann, url, "data")
    click(ann, "Use this data")
    ann.get_by_label("Epochs (0 = default)").fill("1")  # the flow matters here, not the model
    ann.keyboard.press("Enter")
    settle(ann)
    click(ann, "Train model")
    go_to(ann, "Gradient space")
    click(ann, "Extract gradients")
    go_to(ann, "Review")
    assert ann.get_by_placeholder("who is deciding?").count() == 0  # no name box: the sign-in says who
    ann.get_by_text("Deciding as ann@example.org").wait_for()
    assert ann.get_by_text("Import decisions (admins)").count() == 0  # ann is no admin
    ann.get_by_role("button", name="Remove", exact=True).first.click()
    settle(ann)
    ann.get_by_text("decided: remove (ann@example.org)").wait_for()

    bob = sign_in(browser, team, "bob@example.org")
    bob.goto(ann.url)  # the same view, from the address ann shares
    settle(bob)
    bob.get_by_text("Deciding as bob@example.org").wait_for()
    bob.get_by_role("button", name="Keep", exact=True).first.click()  # the same sample: a conflict
    settle(bob)
    bob.get_by_text("decided: keep (bob@example.org)").wait_for()
    bob.get_by_text(re.compile(r"1 conflict: samples")).wait_for()
    bob.get_by_text(re.compile(r"conflict · ann@example.org: remove · bob@example.org: keep")).wait_for()
    shot(bob, "team_conflict")

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT reviewer, decision, sample_id FROM decisions ORDER BY id").fetchall()
    assert [r[:2] for r in rows] == [("ann@example.org", "remove"), ("bob@example.org", "keep")]
    assert rows[0][2] == rows[1][2]

    bob.get_by_role("button", name="Sign out").click()  # clears the cookie, then on to the provider's sign-out
    bob.wait_for_url(lambda address: not address.startswith(url))
    bob.goto(url)
    settle(bob)
    bob.get_by_role("button", name="Sign in").wait_for()
    for page in (ann, bob):
        page.context.close()


def test_an_unverified_email_is_not_the_identity(browser, team):
    """Issue 25, item 3: an account whose email the provider did not verify signed in as the admin of that email
    (identities compared case-insensitively). Now it is known by the provider's issuer and its subject; only a
    verified email, written exactly as listed, is the admin."""
    url, _, oidc = team
    impostor = sign_in(browser, team, "eve-1", {"email": "Boss@Example.org", "email_verified": False},
                       shown=f"{oidc}#eve-1")
    sidebar = impostor.get_by_test_id("stSidebar")
    expect(sidebar).to_contain_text(f"Signed in as {oidc}#eve-1 · reviewer")
    expect(sidebar).to_contain_text("did not verify the email Boss@Example.org")
    shot(impostor, "team_unverified_email")
    case = sign_in(browser, team, "boss-2", {"email": "Boss@example.org", "email_verified": True},
                   shown="Boss@example.org")
    expect(case.get_by_test_id("stSidebar")).to_contain_text("Signed in as Boss@example.org · reviewer")
    boss = sign_in(browser, team, "boss@example.org")
    expect(boss.get_by_test_id("stSidebar")).to_contain_text("Signed in as boss@example.org · admin")
    for page in (impostor, case, boss):
        page.context.close()


UPLOAD = """async ([sid]) => {
    const cookie = document.cookie.split('; ').find(c => c.startsWith('_streamlit_xsrf='));
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(2048)]), 'probe.npz');
    const r = await fetch(`/_stcore/upload_file/${sid}/probe`, {method: 'PUT', body: form, credentials: 'include',
        headers: cookie ? {'X-Xsrftoken': decodeURIComponent(cookie.split('=').slice(1).join('='))} : {}});
    return r.status;
}"""


def session_of(page, url, path=""):
    """Open ``url`` in ``page`` and return the Streamlit session id the server sent it (its first message)."""
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    ids = []

    def frames(ws):
        def read(payload):
            if isinstance(payload, bytes):
                msg = ForwardMsg.FromString(payload)
                if msg.HasField("new_session") and msg.new_session.initialize.session_id:
                    ids.append(msg.new_session.initialize.session_id)
        ws.on("framereceived", read)
    page.on("websocket", frames)
    page.goto(f"{url}{path}")
    settle(page)
    assert ids, "no session id seen"
    return ids[-1]


def test_a_signed_out_visitor_cannot_upload(browser, team):
    """Issue 25, item 5: a visitor who saw only the sign-in screen put 6 x 25 MB into the server's memory through
    Streamlit's upload endpoint. The same request from a signed-in session is taken."""
    url, _, _ = team
    visitor = new_page(browser)
    sid = session_of(visitor, url)
    visitor.get_by_role("button", name="Sign in").wait_for()
    assert visitor.evaluate(UPLOAD, [sid]) == 403
    ann = sign_in(browser, team, "ann@example.org")
    assert ann.evaluate(UPLOAD, [session_of(ann, url, "/data")]) == 204
    for page in (visitor, ann):
        page.context.close()


def test_a_shared_review_link_survives_sign_in(browser, team):
    """Issue 26, item 8: after signing in, a shared Review link landed on Home (Streamlit's sign-in returns to the
    app's root); the link is now kept in the tab and opened again. A kept address can only name this app."""
    url, _, oidc = team
    account(oidc, "cat@example.org", {"email": "cat@example.org", "email_verified": True})
    page = new_page(browser)
    page.goto(f"{url}/review?detector=l2&budget=0.1&status=undecided")
    settle(page)
    page.get_by_role("button", name="Sign in").click()
    page.locator('input[name="sub"]').fill("cat@example.org")
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(re.escape(url) + r"/review\?"))
    settle(page)
    expect(page.locator('[data-testid="stMain"] h1').first).to_have_text(re.compile("^Review"))
    assert "detector=l2" in page.url and "budget=0.1" in page.url and "status=undecided" in page.url
    shot(page, "team_link_after_sign_in")
    for outside in ("//evil.example/x", "https://evil.example/x", "/\\evil.example/x"):  # never followed
        page.evaluate(f"() => sessionStorage.setItem('ogdash.link', {json.dumps(outside)})")
        page.goto(url)  # a new browser session of the app, signed in: it reads what is kept
        settle(page)
        page.wait_for_timeout(1500)
        assert page.url.startswith(f"{url}/?") and "evil" not in page.url, page.url  # still this app's home
    page.context.close()
