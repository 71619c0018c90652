"""WhatsApp-shaped SDPs for tests and the demo, and the SDP checks of the fake.

The samples obey :mod:`d360calling.sdp`'s rules and look like what WhatsApp sends (whatsapp-
media.md): the user's offer is ICE-lite with one IPv4 and one IPv6 host candidate and
``a=end-of-candidates``, one sha-256 fingerprint of a real certificate, Opus/48000 and
telephone-event/8000. Every address is loopback or from a documentation range (RFC 5737,
RFC 3849): a WebRTC stack fed a sample never sends a packet to a real host.

The fake refuses what the real API would refuse (the ``refused`` rules) with 400, code 138008
"SDP Validation error", subcode 2593093, naming the first problem in ``details``.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Literal

from .. import sdp as sdp_rules
from ._errors import FakeAPIError

__all__ = (
    "SDP_ERROR_CODE",
    "SDP_ERROR_SUBCODE",
    "check_sdp",
    "sample_answer",
    "sample_offer",
    "user_answer",
)

SDP_ERROR_CODE = (
    138008  # "SDP Validation error" (integrators; api-facts §5.2 lists it as undocumented)
)
SDP_ERROR_SUBCODE = 2593093


# Without ``cryptography`` (the ``testing`` extra brings it): a well-formed sha-256 digest per
# side, of nothing in particular, so no stack will ever match it - which only matters in media
# mode, and media mode brings aiortc, which brings cryptography.
def _fallback_digest(name: str) -> str:
    return hashlib.sha256(f"d360calling fake certificate: {name}".encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _certificate_digest(name: str) -> str:
    """The sha-256 of a real self-signed ECDSA certificate (what WhatsApp recommends), made
    once per ``name``; a fixed well-formed digest without ``cryptography``."""
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:  # pragma: no cover - cryptography comes with the test dependencies
        return _fallback_digest(name)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _fingerprint(name: str) -> str:
    digest = _certificate_digest(name).upper()
    return ":".join(digest[i : i + 2] for i in range(0, 64, 2))


def _ice(seed: str, role: str) -> tuple[str, str]:
    """ICE credentials that differ per seed and role, so an answer never reuses its offer's."""
    digest = hashlib.sha256(f"{role}:{seed}".encode()).hexdigest()
    return digest[:8], digest[8:40]


def _sdp(
    seed: str,
    role: str,
    *,
    setup: str,
    candidates: list[tuple[str, int]],
    lite: bool,
    opus_pt: str = "111",
    event_pt: str | None = "126",
    certificate: str,
) -> str:
    session_id = int(hashlib.sha256(f"{role}:{seed}".encode()).hexdigest()[:15], 16)
    ufrag, pwd = _ice(seed, role)
    formats = " ".join(pt for pt in (opus_pt, event_pt) if pt is not None)
    lines = [
        "v=0",
        f"o=- {session_id} 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        *(["a=ice-lite"] if lite else []),
        "a=group:BUNDLE 0",
        "a=msid-semantic: WMS",
        f"m=audio 9 UDP/TLS/RTP/SAVPF {formats}",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
    ]
    for number, (address, port) in enumerate(candidates, start=1):
        priority = 2122260223 - 64 * (number - 1)
        lines.append(f"a=candidate:{number} 1 udp {priority} {address} {port} typ host")
    lines += [
        "a=end-of-candidates",
        f"a=ice-ufrag:{ufrag}",
        f"a=ice-pwd:{pwd}",
        f"a=fingerprint:sha-256 {_fingerprint(certificate)}",
        f"a=setup:{setup}",
        "a=mid:0",
        "a=sendrecv",
        "a=rtcp-mux",
        f"a=rtpmap:{opus_pt} opus/48000/2",
        f"a=fmtp:{opus_pt} minptime=10;useinbandfec=1",
    ]
    if event_pt is not None:
        lines.append(f"a=rtpmap:{event_pt} telephone-event/8000")
    return "\r\n".join(lines) + "\r\n"


def sample_offer(seed: str = "offer") -> str:
    """An SDP offer shaped like a WhatsApp user's phone sends it (ICE-lite, one IPv4 and one
    IPv6 host candidate on loopback). Also fine as your own offer for ``connect`` in tests.
    Different seeds give different SDPs, so two calls never share one."""
    return _sdp(
        seed,
        "offer",
        setup="actpass",
        candidates=[("127.0.0.1", 40012), ("::1", 40012)],
        lite=True,
        certificate="whatsapp",
    )


def _mirrored(offer: str | None) -> tuple[str, str | None, str]:
    """The offer's Opus and 8000 Hz telephone-event payload types, and the DTLS role an
    answer to it takes; the defaults when there is no (readable) offer."""
    if offer is None:
        return "111", "126", "active"
    try:
        desc = sdp_rules.parse(offer)
    except sdp_rules.SdpParseError:
        return "111", "126", "active"
    audio = desc.audio
    if audio is None:
        return "111", "126", "active"
    codecs = [audio.codecs[pt] for pt in audio.formats if pt in audio.codecs]
    opus = next((c.payload_type for c in codecs if c.name.lower() == "opus"), "111")
    event = next(
        (
            c.payload_type
            for c in codecs
            if c.name.lower() == "telephone-event" and c.clock_rate == 8000
        ),
        None,
    )
    offered = (audio.values("setup") or desc.values("setup") or ["actpass"])[0].lower()
    return opus, event, "passive" if offered == "active" else "active"


def sample_answer(seed: str = "answer", offer: str | None = None) -> str:
    """An SDP answer as your WebRTC stack produces it for ``pre_accept``/``accept``: a full
    ICE agent (no ``a=ice-lite``; the business must be controlling), DTLS ``active``. Given
    the ``offer``, it answers with the offer's payload types."""
    opus, event, setup = _mirrored(offer)
    return _sdp(
        seed,
        "answer",
        setup=setup,
        candidates=[("192.0.2.10", 40000)],
        lite=False,
        opus_pt=opus,
        event_pt=event,
        certificate="business",
    )


def user_answer(seed: str, offer: str) -> str:
    """The answer a WhatsApp user's phone gives a business offer: ICE-lite, the offer's
    payload types, and the DTLS role the offer leaves it."""
    opus, event, setup = _mirrored(offer)
    return _sdp(
        seed,
        "user-answer",
        setup=setup,
        candidates=[("127.0.0.1", 40012), ("::1", 40012)],
        lite=True,
        opus_pt=opus,
        event_pt=event,
        certificate="whatsapp",
    )


def check_sdp(
    sdp: str,
    *,
    role: Literal["offer", "answer"],
    need_fingerprint: bool,
    offer: str | None = None,
) -> None:
    """Refuse ``sdp`` as the real API would: the first problem that WhatsApp refuses, as
    400 / 138008 with the problem in ``details``. Problems that only break media pass (the
    real API accepts them too)."""
    problems = sdp_rules.check(
        sdp, role=role, offer=offer, key_exchange="dtls" if need_fingerprint else "sdes"
    )
    refused = [p for p in problems if p.severity is sdp_rules.Severity.REFUSED]
    if refused:
        first = refused[0]
        more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise FakeAPIError.meta(
            SDP_ERROR_CODE,
            f"session.sdp: Invalid SDP: {first.message} [{first.code}]{more}",
            subcode=SDP_ERROR_SUBCODE,
        )
