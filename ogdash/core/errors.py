"""The one exception type ogdash raises for bad input.

Pages show its message with ``st.error``; the CLI prints it and exits non-zero.
The message is a single sentence that says what is wrong and what to do.
"""


class OgdashError(ValueError):
    """Bad input or an impossible request, with a message meant for a person."""


def first_line(e: Exception, limit: int = 100) -> str:
    """The first sentence of an exception's message, short enough for a one-line error."""
    lines = str(e).strip().splitlines()
    text = lines[0].split(". ")[0].rstrip(".") if lines else "no details"
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
