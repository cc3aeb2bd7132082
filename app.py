"""ogdash dashboard: `streamlit run app.py` (or `make run`)."""
import streamlit as st

from dashboard.nav import existing_pages
from dashboard.sidebar import sidebar
from dashboard.state import sync_url

st.set_page_config(page_title="ogdash", page_icon=":material/scatter_plot:", layout="wide")
pages = [st.Page(p.path, title=p.title, icon=p.icon, default=(i == 0)) for i, p in enumerate(existing_pages())]
nav = st.navigation(pages)
sync_url()  # what the last run changed, in case it ended with st.stop()
sidebar()
try:
    nav.run()
finally:
    sync_url()  # after the page ran, also when it stopped early: the URL always holds what is on screen
