"""The one error type of analyze: a message for the user, shown as one line by the CLI."""


class AnalyzeError(Exception):
    """Bad input (missing, empty or unreadable traces); the message names the input."""
