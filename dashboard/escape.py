"""User strings shown literally: file and folder names, class names, reviewer names, texts, messages.

Streamlit renders Markdown in st.markdown, st.caption, alerts, subheaders, metric labels and
tooltips: a class name ``[x](https://example.com)`` would become a link and ``![x](https://…)``
an image the browser fetches. Plotly renders a few HTML tags (``<a href>``, ``<img>`` is
dropped, ``<b>``) in legends, ticks and hovers. Every user string goes through ``md`` or
``html`` before it is rendered; ``error`` shows a message (which may name a user's file) as one.
"""
from __future__ import annotations

import html as _html
import re


def md(text) -> str:
    """``text`` shown literally inside Markdown: every character Markdown could read as syntax is escaped,
    and line breaks become spaces (a newline could start a heading, a list or a link definition)."""
    flat = re.sub(r"[\r\n\u2028\u2029]+", " ", str(text))
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=\"'/@])", r"\\\1", flat)


def html(text) -> str:
    """``text`` shown literally in a Plotly label, legend or hover (which read a few HTML tags)."""
    return _html.escape(str(text), quote=True)


def error(message) -> None:
    """``st.error`` of a message that may hold user strings (a file name, a class name), shown literally."""
    import streamlit as st

    st.error(md(message))
