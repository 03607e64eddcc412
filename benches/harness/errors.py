"""The one error type the harness raises: it names the command or file at fault."""


class BenchError(Exception):
    """A benchmark step failed; the message names what and where its log is."""
