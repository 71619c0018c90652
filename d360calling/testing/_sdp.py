"""Plausible WebRTC SDPs for tests and the demo, and the checks the fake applies to SDPs."""

from __future__ import annotations

import hashlib
import re

__all__ = (
    "sample_answer",
    "sample_offer",
    "sdp_problem",
)

_FINGERPRINT = re.compile(r"^a=fingerprint:\S+ [0-9A-Fa-f:]+$", re.MULTILINE)


def _fingerprint(seed: str) -> str:
    digest = hashlib.sha256(seed.encode()).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def _sdp(seed: str, session_id: int, setup: str, address: str) -> str:
    lines = [
        "v=0",
        f"o=- {session_id} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 126",
        "c=IN IP4 0.0.0.0",
        f"a=candidate:1 1 udp 2122260223 {address} 40012 typ host",
        f"a=ice-ufrag:{seed[:4].ljust(4, 'x')}",
        f"a=ice-pwd:{hashlib.sha1(seed.encode()).hexdigest()[:24]}",
        f"a=fingerprint:sha-256 {_fingerprint(seed)}",
        f"a=setup:{setup}",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:126 telephone-event/8000",
    ]
    return "\r\n".join(lines) + "\r\n"


def sample_offer(seed: str = "offer") -> str:
    """An SDP offer as a WhatsApp user's phone (or your WebRTC stack, for ``connect``) sends it.
    Different seeds give different fingerprints, so two calls never share an SDP."""
    session_id = int(hashlib.sha256(seed.encode()).hexdigest()[:15], 16)
    return _sdp(seed, session_id, "actpass", "157.240.0.10")


def sample_answer(seed: str = "answer") -> str:
    """An SDP answer as your WebRTC stack produces it for ``pre_accept``/``accept``."""
    session_id = int(hashlib.sha256(seed.encode()).hexdigest()[:15], 16)
    return _sdp(seed, session_id, "active", "192.0.2.10")


def sdp_problem(sdp: str, *, need_fingerprint: bool) -> str | None:
    """Why the real API would refuse ``sdp``, or ``None``. Mirrors the documented failures:
    RFC 8866 framing with CRLF line ends, one audio stream, and a DTLS fingerprint."""
    if re.search(r"(?<!\r)\n", sdp):
        return "SDP lines must end with CRLF, not a bare LF"
    if not sdp.startswith("v=0\r\n"):
        return "SDP must start with 'v=0'"
    if "\r\nm=audio " not in sdp:
        return "SDP has no 'm=audio' media section"
    if need_fingerprint and not _FINGERPRINT.search(sdp.replace("\r\n", "\n")):
        return "No fingerprint found in SDP"
    return None
