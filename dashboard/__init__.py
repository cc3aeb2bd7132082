"""Streamlit helpers shared by the pages in ``views/``: view state in the URL, sidebar, plots, gallery cards.

The library (``ogdash``) never imports Streamlit; everything that does lives here, in ``views/`` and ``app.py``.
"""
