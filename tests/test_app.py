"""Every page renders headless under Streamlit's AppTest."""
from streamlit.testing.v1 import AppTest

from dashboard.nav import ROOT, existing_pages


def test_app_and_home_render():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("outlier gradient analysis" in m.value for m in at.markdown)


def test_navigation_lists_every_page_file():
    paths = {p.path for p in existing_pages()}
    assert "views/home.py" in paths
