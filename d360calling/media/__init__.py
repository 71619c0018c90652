"""Real call audio over WebRTC (the ``media`` extra: aiortc): :class:`MediaCall` answers a
user's call or places one, and carries 20 ms frames of 16-bit PCM both ways.

>>> from d360calling.media import MediaCall                  # doctest: +SKIP
>>> call = await MediaCall.answer(client, connect_event)      # doctest: +SKIP
>>> await call.play_tone(440, 1.0)                            # doctest: +SKIP

Without the extra, importing this package raises ``ImportError`` saying how to install it.
"""

try:
    import aiortc  # noqa: F401  (only to fail here, with the message below)
except ImportError as exc:  # pragma: no cover - the plain venv tests this through a subprocess
    raise ImportError(
        'd360calling.media needs the media extra: pip install "d360calling[media]"'
    ) from exc

from ._audio import CHANNELS, FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE, PcmFrame, tone, wav_frames
from ._call import MediaCall, MediaCalls
from ._errors import MediaError, MediaOfferError, MediaTimeoutError
from ._net import DEFAULT_LOCAL_ADDRESSES, MediaConfig

__all__ = (
    "CHANNELS",
    "DEFAULT_LOCAL_ADDRESSES",
    "FRAME_BYTES",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "MediaCall",
    "MediaCalls",
    "MediaConfig",
    "MediaError",
    "MediaOfferError",
    "MediaTimeoutError",
    "PcmFrame",
    "tone",
    "wav_frames",
)
