"""The fake's media mode (the ``media`` extra): see :mod:`d360calling.testing._media`."""

from ._media import FakeMedia, FakeMediaCall, dominant_frequency

__all__ = ("FakeMedia", "FakeMediaCall", "dominant_frequency")
