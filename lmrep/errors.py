"""The one exception type users see: a problem with their input, and what to do about it."""


class LmrepError(Exception):
    """Bad input or an unavailable resource. The CLI prints the message on one line and exits with 2."""
