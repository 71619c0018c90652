"""The SDP steps between aiortc and WhatsApp: what to send (one sha-256 fingerprint, CRLF)
and whether a user's offer can carry a call at all."""

from __future__ import annotations

import importlib
import re
from typing import Any

__all__ = ("candidate_addresses", "conformant", "offer_problems")

_CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ", re.MULTILINE)


def _core() -> Any:
    # d360calling.sdp (the core's rules) when present; this extra predates it in some trees.
    try:
        return importlib.import_module("d360calling.sdp")
    except ImportError:
        return None


def conformant(sdp: str) -> str:
    """``sdp`` as WhatsApp takes it: CRLF line ends and only the sha-256 fingerprint
    (aiortc also emits sha-384 and sha-512, which WhatsApp refuses with 138008)."""
    core = _core()
    if core is not None and hasattr(core, "normalize"):
        return str(core.normalize(sdp))
    lines = sdp.replace("\r\n", "\n").split("\n")
    kept = [
        line
        for line in lines
        if not (line.startswith("a=fingerprint:") and not line.startswith("a=fingerprint:sha-256 "))
    ]
    while kept and not kept[-1]:
        kept.pop()
    return "\r\n".join(kept) + "\r\n"


def offer_problems(sdp: str) -> list[str]:
    """Why ``sdp`` (a user's offer) cannot carry a call, in plain words; empty when it can."""
    if not isinstance(sdp, str) or not sdp.strip():
        return ["the offer is empty"]
    text = sdp.replace("\r\n", "\n")
    problems: list[str] = []
    if not text.startswith("v=0\n"):
        problems.append("the offer is not an SDP (it must start with 'v=0')")
    audio = [line for line in text.split("\n") if line.startswith("m=audio ")]
    if not audio:
        problems.append("the offer has no audio media section ('m=audio')")
    elif not re.search(r"^a=rtpmap:\d+ opus/48000(/\d)?$", text, re.MULTILINE | re.IGNORECASE):
        problems.append("the offer's audio has no Opus at 48000 Hz (the codec WhatsApp speaks)")
    if not re.search(r"^a=fingerprint:", text, re.MULTILINE):
        problems.append("the offer has no DTLS fingerprint")
    if not re.search(r"^a=ice-ufrag:", text, re.MULTILINE):
        problems.append("the offer has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
    return problems


def candidate_addresses(sdp: str) -> list[str]:
    """The connection address of every ``a=candidate`` in ``sdp``."""
    return _CANDIDATE.findall(sdp.replace("\r\n", "\n"))
