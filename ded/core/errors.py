"""The errors a user fixes: a config value, an input file, a missing model or a taken run folder.

``run.py`` prints their message alone (no traceback) and exits with status 2: the message
already names the key, file and line, or what is missing. Anything else is a bug and keeps its
traceback.
"""


class UserError(Exception):
    """Bad input or an unusable machine, named in the message."""
