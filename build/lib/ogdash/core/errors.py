"""The one exception type ogdash raises for bad input.

Pages show its message with ``st.error``; the CLI prints it and exits non-zero.
The message is a single sentence that says what is wrong and what to do.
"""


class OgdashError(ValueError):
    """Bad input or an impossible request, with a message meant for a person."""
