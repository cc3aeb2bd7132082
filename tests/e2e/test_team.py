"""A review team in real browsers: sign-in through a real OpenID Connect provider (oidc-provider-mock), two
reviewers at once, and a signed-out visitor who sees only the sign-in screen."""
import re
import secrets
import sqlite3

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
        yield url, home / "decisions.sqlite"


def new_page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(120_000)
    return page


def sign_in(browser, url, who):
    """A fresh browser that signs in as ``who`` on the provider's form."""
    page = new_page(browser)
    page.goto(url)
    settle(page)
    page.get_by_role("button", name="Sign in").click()
    page.locator('input[name="sub"]').fill(who)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(re.escape(url)))
    settle(page)
    expect(page.get_by_test_id("stSidebar")).to_contain_text(f"Signed in as {who}")
    return page


def test_signed_out_sees_only_the_sign_in_screen(browser, team):
    url, _ = team
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
    url, db = team
    ann = sign_in(browser, url, "ann@example.org")
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

    bob = sign_in(browser, url, "bob@example.org")
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
