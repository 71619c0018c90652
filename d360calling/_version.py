"""The package version: the one source for packaging and the User-Agent header."""

__all__ = ("__version__",)

__version__ = "0.1.0"
