"""One exception type for every user-facing mistake; the CLI prints its message and exits 2."""


class PaperlibError(Exception):
    """Bad input or an unusable environment, with a message that says how to fix it."""
