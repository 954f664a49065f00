"""User-facing errors of the experiment layer.

A :class:`UserError` is a mistake the user can fix (a malformed config, an unknown env id, a run
directory that is not a run, a corrupt checkpoint). The CLI prints its message as one paragraph
and exits with code 2 -- never a traceback -- so every message must name the problem *and* the fix.
Anything else that escapes is a bug in neuromod-rl and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem in the user's input, with a message that says how to fix it."""
