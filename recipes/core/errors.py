"""The one error type a bad configuration raises."""


class ConfigError(ValueError):
    """A configuration problem, reported in one line that names the key and what was expected.

    ``recipes/train.py`` catches it, prints ``error: <message>`` and exits with status 2 before any data is read
    or any folder is written.
    """
