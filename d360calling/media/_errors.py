"""The media extra's errors (all :class:`~d360calling.errors.D360Error`)."""

from __future__ import annotations

from ..errors import D360Error

__all__ = ("MediaError", "MediaOfferError", "MediaTimeoutError")


class MediaError(D360Error):
    """A call's media could not be set up or stopped."""


class MediaOfferError(MediaError, ValueError):
    """The user's SDP offer cannot carry a WhatsApp call (no audio, no Opus, malformed);
    the call was rejected through the API. ``problems`` lists why, in plain words."""

    def __init__(self, message: str, *, call_id: str, problems: tuple[str, ...]) -> None:
        super().__init__(message)
        self.call_id = call_id
        self.problems = problems


class MediaTimeoutError(MediaError, TimeoutError):
    """ICE and DTLS did not connect (or media stopped) within the media timeout; the call
    was rejected or terminated through the API."""

    def __init__(self, message: str, *, call_id: str) -> None:
        super().__init__(message)
        self.call_id = call_id
