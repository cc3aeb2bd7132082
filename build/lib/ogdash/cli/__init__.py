"""The ``ogdash`` command: every argparse parser lives in this package; the work is done by the library."""
from ogdash.cli.main import main

__all__ = ["main"]
