"""The one error type of capture: a message for the user, shown as one line by the CLI."""


class CaptureError(Exception):
    """Bad input or an unrecoverable condition; the message names the input and what to do."""
