"""ogdash dashboard: `streamlit run app.py` (or `make run`)."""
import os
import sys
import time

import streamlit as st

from dashboard.auth import back_to_link, locked, sign_in_gate
from dashboard.escape import error
from dashboard.nav import existing_pages, keep_cwd_off_path
from dashboard.sidebar import sidebar
from dashboard.state import link_problems, sync_url
from dashboard.upload_guard import install as guard_uploads
from dashboard.upload_guard import note_session

started, nav = time.perf_counter(), None
keep_cwd_off_path()  # a link may name code only from installed, allowed packages (README, "Security")
try:
    st.set_page_config(page_title="ogdash", page_icon=":material/scatter_plot:", layout="wide")
    pages = [st.Page(p.path, title=p.title, icon=p.icon, default=(i == 0)) for i, p in enumerate(existing_pages())]
    nav = st.navigation(pages, position="hidden" if locked() else "sidebar")  # signed out: not even the page list
    guard_uploads()  # Streamlit's upload endpoint: signed-out sessions refused, bytes capped per session
    note_session(not locked())
    sign_in_gate()  # signed out with sign-in on: only the sign-in screen, and the run stops here
    back_to_link()  # just signed in: back to the link opened before sign-in (Streamlit's sign-in returns to /)
    sync_url()  # what the last run changed, in case it ended with st.stop()
    sidebar()
    for problem in link_problems():  # a shared link that did not pass the schema: said once, the defaults are used
        error(problem)
    try:
        nav.run()
    finally:
        sync_url()  # after the page ran, also when it stopped early: the URL always holds what is on screen
finally:  # every run, also one cut short by a click or st.rerun
    if os.environ.get("OGDASH_RUN_TIMES"):  # each run's server time, for benchmarks/ui_scale.py to read in the log
        print(f"ogdash-run {(nav.url_path or 'home') if nav else '-'} {time.perf_counter() - started:.3f}",
              file=sys.stderr, flush=True)
