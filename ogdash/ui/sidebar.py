"""The sidebar every page shares: what data and model are active."""
import streamlit as st


def sidebar() -> None:
    with st.sidebar:
        st.caption("ogdash · outlier gradient analysis")
        active = st.session_state.get("active")
        if active:
            st.markdown(f"**Data:** {active['data']}  \n**Model:** {active['model']}")
        else:
            st.caption("No dataset loaded yet.")
        st.caption("Scores: higher = more detrimental.")
