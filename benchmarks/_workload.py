"""The request every client sends in the throughput runs: a ~1.5 KB ``accept``, as a browser's
WebRTC stack would answer a WhatsApp call."""

from __future__ import annotations

CALL_ID = "wacid.HBgLMTY1MDM4Nzk0MzkVAgARGCAyQTlBNjdCMzIwRkQyMjBBN0I4RkQ3MzEyRDQ4MDNDRgA="
API_KEY = "bench-api-key"


def answer_sdp() -> str:
    """An SDP answer of the size Chrome produces for an audio-only call (~1.3 KB)."""
    lines = [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS 7d3c2f6a-9b1e-4c55-8a0f-2b6d1e9f3c44",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:1467250027 1 udp 2122260223 192.0.2.10 46243 typ host generation 0",
        "a=candidate:1467250027 2 udp 2122260222 192.0.2.10 47453 typ host generation 0",
        "a=ice-ufrag:Oyef",
        "a=ice-pwd:7lwO6NhTnNMZs7a2DRf7mpJj",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A"
        ":7F:B9:A3:F4:70:03:E7:43:91:73:23:5E",
        "a=setup:active",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=sendrecv",
        "a=msid:7d3c2f6a-9b1e-4c55-8a0f-2b6d1e9f3c44 5f0e2b71-3d8c-4a9e-b6f2-1c7a9d3e5b80",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:63 red/48000/2",
        "a=fmtp:63 111/111",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:13 CN/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:126 telephone-event/8000",
    ]
    return "\r\n".join(lines) + "\r\n"


def accept_payload() -> dict[str, str]:
    """The accept request as a hand-written client builds it."""
    return {
        "messaging_product": "whatsapp",
        "call_id": CALL_ID,
        "action": "accept",
        "session": {"sdp_type": "answer", "sdp": answer_sdp()},  # type: ignore[dict-item]
    }
