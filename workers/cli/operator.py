"""Who is acting from the command line, as the events they cause record it."""

from __future__ import annotations

import getpass
import os


def actor() -> str:
    """``cli:<os user>``: the actor recorded on events a CLI command causes."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER
        user = f"uid-{os.getuid()}"
    return f"cli:{user}"
