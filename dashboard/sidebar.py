"""The sidebar every page shares: what data and model are active."""
import streamlit as st

from dashboard.auth import who_box
from dashboard.escape import md
from dashboard.scan import describe_model
from dashboard.state import data_spec, model_config


def sidebar() -> None:
    """The sidebar: the active data and model, and how to change them."""
    with st.sidebar:
        st.caption("ogdash · outlier gradient analysis")
        st.markdown(f"**Data:** {md(data_spec().describe())}  \n**Model:** {md(describe_model(model_config()))}")
        st.caption("Every score: higher = more detrimental.")
        who_box()
