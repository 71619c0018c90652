"""The package version: the one source for packaging and the User-Agent header."""

__version__ = "0.1.0"
