"""The exceptions of the package: each carries the library's one sentence."""


class Error(Exception):
    """A flexmoe call failed; str(e) is the library's sentence naming the
    file, key or value at fault."""


class ConfigError(Error, ValueError):
    """A parameter is wrong (a value out of range, an unknown name or key):
    the CLI's exit code 2."""


class InputError(Error, OSError):
    """An input or operation failed (a trace that cannot be read, a database
    that cannot be written): the CLI's exit code 1."""

    def __str__(self):
        return self.args[0] if self.args else ""
