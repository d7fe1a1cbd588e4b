"""The errors a user can fix, under one base class.

`DalitrainError` is an expected failure: a bad config or option, a malformed manifest or scan index, an unusable
checkpoint, too many unreadable videos, a decoder that is not installed. Its message is one line naming the file
(or the option) and the reason; the command line prints it as `dalitrain COMMAND: error: MESSAGE` and exits with
status 2. Anything else is a bug or an environment failure and keeps its traceback.

The subclasses also derive from the built-in type their callers historically caught (ValueError, OSError,
RuntimeError), so `except ValueError` around a config load keeps working.
"""
from __future__ import annotations


class DalitrainError(Exception):
    """An expected failure with a one-line message (module docstring)."""


class UsageError(DalitrainError, ValueError):
    """An option, or a combination of options, that cannot work: named by its config key or flag."""


class InputError(DalitrainError, ValueError):
    """An input file or folder that cannot be used (a corpus folder of another corpus, a manifest with no playable
    video, an output folder that cannot be made): named with the reason."""
