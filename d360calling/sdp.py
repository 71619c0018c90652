"""What WhatsApp accepts in an SDP, checked before you send it.

A call bot's WebRTC stack writes the SDP; WhatsApp refuses some of what stacks write (aiortc's
three fingerprints, LF line ends) with ``400 SDP Validation error`` (code 138008), and accepts
some that then carries no audio (no candidates, a DTMF clock it does not speak). This module
says which, in plain words, without sending anything::

    >>> from d360calling import sdp
    >>> problems = sdp.check(my_answer, role="answer", offer=event.sdp)
    >>> [p.code for p in problems if p.severity is sdp.Severity.REFUSED]
    []
    >>> fixed = sdp.normalize(my_answer)   # CRLF, one sha-256 fingerprint, no stray blanks

The rules and where each comes from are in :data:`RULES`. Messages never repeat a credential
(``ice-pwd``, ``ice-ufrag``, ``a=crypto`` keys) from the SDP. The module needs nothing beyond
the standard library.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
import threading
import warnings
from collections.abc import Mapping
from typing import Literal

import attrs

from .errors import InvalidRequestError

__all__ = (
    "RULES",
    "Candidate",
    "Codec",
    "MediaSection",
    "Rule",
    "SdpCheck",
    "SdpParseError",
    "SdpProblem",
    "SdpWarning",
    "SessionDescription",
    "Severity",
    "check",
    "is_documentation_or_loopback",
    "normalize",
    "parse",
)


class _StrEnum(str, enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


class SdpCheck(_StrEnum):
    """What the client does with an SDP's problems before sending it (``sdp_check=``).

    Attributes:
        OFF: Send as given.
        WARN: Warn (:class:`SdpWarning`) naming the problems, then send.
        REFUSE: Raise :class:`~d360calling.errors.InvalidRequestError` naming them; nothing
            is sent.
    """

    OFF = "off"
    WARN = "warn"
    REFUSE = "refuse"


class Severity(_StrEnum):
    """How bad a problem is.

    Attributes:
        REFUSED: The real API answers 400, code 138008 (SDP Validation error).
        BREAKS_MEDIA: Accepted, but the call will have no (or one-way) audio.
        WARNING: Works, but not as WhatsApp's own clients do; worth a look.
    """

    REFUSED = "refused"
    BREAKS_MEDIA = "breaks-media"
    WARNING = "warning"


class SdpParseError(InvalidRequestError):
    """The text is not an SDP at all (not a string, or it does not start with ``v=``)."""


class SdpWarning(UserWarning):
    """An SDP about to be sent has problems (``sdp_check="warn"``); the message names them."""


@attrs.frozen
class Rule:
    """One check :func:`check` applies.

    Attributes:
        code: Its stable slug, e.g. ``"not-crlf"``.
        severity: How bad a problem it finds is.
        fixable: Whether :func:`normalize` fixes it.
        source: What the rule rests on (an RFC, Meta's documentation, integrators' reports).
    """

    code: str
    severity: Severity
    fixable: bool
    source: str


@attrs.frozen
class SdpProblem:
    """One thing wrong with an SDP; ``str()`` gives ``code (line n): message``.

    Attributes:
        code: A short stable slug (see :data:`RULES`).
        message: In plain words, what WhatsApp would refuse or what breaks media. It never
            repeats a credential from the SDP.
        severity: How bad it is.
        fixable: Whether :func:`normalize` fixes it.
        line: The 1-based line it was found on, when there is one.
    """

    code: str
    message: str
    severity: Severity
    fixable: bool
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.code}{where}: {self.message}"


_M_FAQ = "Meta Calling FAQ (api-facts §6)"
_RULES: tuple[tuple[str, Severity, bool, str], ...] = (
    ("not-sdp", Severity.REFUSED, False, "RFC 8866 §5: an SDP starts with v=0"),
    ("not-crlf", Severity.REFUSED, True, "RFC 8866 §5 (CRLF); the fake and integrators"),
    ("double-escaped", Severity.REFUSED, True, "integrators (whatsapp-media.md: line ends)"),
    ("malformed-line", Severity.REFUSED, False, "RFC 8866 §5: every line is <type>=<value>"),
    ("version-not-0", Severity.REFUSED, False, "RFC 8866 §5.1"),
    ("missing-origin", Severity.REFUSED, False, "RFC 8866 §5.2"),
    ("missing-session-name", Severity.REFUSED, False, "RFC 8866 §5.3"),
    ("missing-timing", Severity.REFUSED, False, "RFC 8866 §5.9"),
    ("missing-connection", Severity.REFUSED, False, "RFC 8866 §5.7"),
    ("trailing-whitespace", Severity.WARNING, True, "RFC 8866 §5"),
    ("blank-line", Severity.WARNING, True, "RFC 8866 §5"),
    ("no-final-crlf", Severity.WARNING, True, "RFC 8866 §5"),
    ("no-media", Severity.REFUSED, False, _M_FAQ + ": one audio stream"),
    ("several-media-sections", Severity.REFUSED, False, _M_FAQ + ": one media stream"),
    ("no-audio", Severity.REFUSED, False, _M_FAQ + ": one audio track"),
    ("audio-port-zero", Severity.REFUSED, False, "RFC 3264 §6: port 0 declines the stream"),
    ("no-opus", Severity.REFUSED, False, _M_FAQ + ": Opus/48000 (RFC 7587)"),
    ("g711-only", Severity.WARNING, False, "M-OV: audio.additional_codecs; Meta transcodes"),
    ("opus-not-48000", Severity.REFUSED, False, "RFC 7587 §4.1: opus/48000/2"),
    ("rtpmap-malformed", Severity.REFUSED, False, "RFC 8866 §6.6"),
    ("payload-without-rtpmap", Severity.BREAKS_MEDIA, False, "RFC 8866 §6.6 (dynamic types)"),
    ("telephone-event-clock", Severity.BREAKS_MEDIA, False, "M-UIC: telephone-event/8000 only"),
    ("profile-not-savpf", Severity.REFUSED, False, _M_FAQ + ": SRTP, UDP/TLS/RTP/SAVPF"),
    ("profile-legacy", Severity.WARNING, False, "RFC 5764 §8: UDP/TLS/RTP/SAVPF for DTLS-SRTP"),
    ("no-fingerprint", Severity.REFUSED, False, _M_FAQ + ': "No fingerprint found in SDP"'),
    ("several-fingerprints", Severity.REFUSED, True, "pipecat; integrators: 138008/2593093"),
    ("fingerprint-not-sha256", Severity.REFUSED, False, "pipecat: only SHA-256 is supported"),
    ("fingerprint-malformed", Severity.REFUSED, False, "RFC 8122 §5"),
    ("no-crypto", Severity.REFUSED, False, "M-OV: SDES needs a=crypto (RFC 4568)"),
    ("no-setup", Severity.BREAKS_MEDIA, False, "RFC 5763 §5: a=setup decides the DTLS role"),
    ("setup-offer-not-actpass", Severity.BREAKS_MEDIA, False, "RFC 5763 §5: offer actpass"),
    ("setup-answer-actpass", Severity.BREAKS_MEDIA, False, "RFC 5763 §5: answer active/passive"),
    ("setup-conflict", Severity.BREAKS_MEDIA, False, "RFC 4145 §4.1: roles must complement"),
    ("no-ice-credentials", Severity.REFUSED, False, "RFC 8839 §5.4: ice-ufrag and ice-pwd"),
    ("ice-credentials-short", Severity.BREAKS_MEDIA, False, "RFC 8839 §5.4: 4 and 22 chars"),
    ("no-candidates", Severity.BREAKS_MEDIA, False, _M_FAQ + ": no trickle"),
    ("candidate-malformed", Severity.BREAKS_MEDIA, False, "RFC 8839 §5.1"),
    ("no-udp-candidate", Severity.BREAKS_MEDIA, False, _M_FAQ + ": media over UDP"),
    ("no-end-of-candidates", Severity.WARNING, False, "RFC 8840 §8.2; whatsapp-media.md"),
    ("ice-lite-business", Severity.WARNING, False, _M_FAQ + ": business must be controlling"),
    ("both-ice-lite", Severity.BREAKS_MEDIA, False, "RFC 8445 §6.1.1: nobody would control"),
    ("direction-not-sendrecv", Severity.BREAKS_MEDIA, False, "M-TS: 20 s without media ends"),
    ("no-rtcp-mux", Severity.WARNING, False, "RFC 8843/5761: WebRTC muxes RTCP"),
    ("answer-media-count", Severity.REFUSED, False, "RFC 3264 §6: one answer m= per offer m="),
    ("answer-payload-not-in-offer", Severity.BREAKS_MEDIA, False, "RFC 3264 §6.1"),
    ("answer-codec-mismatch", Severity.BREAKS_MEDIA, False, "RFC 3264 §6.1: same mapping"),
    ("answer-echoes-offer", Severity.REFUSED, False, "RFC 3264: an answer is not the offer"),
)
RULES: Mapping[str, Rule] = {code: Rule(code, sev, fix, src) for code, sev, fix, src in _RULES}
"""Every rule :func:`check` applies, by code."""


# -- the parsed shape ---------------------------------------------------------------------


@attrs.frozen
class Codec:
    """One ``a=rtpmap``: payload type, encoding name (as written), clock rate, channels."""

    payload_type: str
    name: str
    clock_rate: int
    channels: int | None = None


@attrs.frozen
class Candidate:
    """One ``a=candidate`` line (RFC 8839 §5.1)."""

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str


@attrs.frozen
class MediaSection:
    """One ``m=`` section.

    Attributes:
        kind: The media, e.g. ``"audio"``.
        port: The ``m=`` line's port.
        proto: Its transport profile, e.g. ``"UDP/TLS/RTP/SAVPF"``.
        formats: Its payload types, as written.
        line: The (1-based) line of the ``m=``.
        connections: The section's ``c=`` values.
        attributes: Every ``a=`` line in order as (name, value), value ``None`` for a flag
            such as ``a=rtcp-mux``.
    """

    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    line: int
    connections: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str | None], ...] = ()

    def values(self, name: str) -> list[str]:
        """The values of every ``a=<name>:<value>`` in this section."""
        return [v for n, v in self.attributes if n == name and v is not None]

    def has(self, name: str) -> bool:
        """Whether this section has an ``a=<name>`` line (a flag or with a value)."""
        return any(n == name for n, _ in self.attributes)

    @property
    def codecs(self) -> dict[str, Codec]:
        """The well-formed ``a=rtpmap`` lines, by payload type."""
        found: dict[str, Codec] = {}
        for value in self.values("rtpmap"):
            codec = _codec(value)
            if codec is not None:
                found.setdefault(codec.payload_type, codec)
        return found

    @property
    def candidates(self) -> list[Candidate]:
        """The well-formed ``a=candidate`` lines."""
        return [c for c in map(_candidate, self.values("candidate")) if c is not None]


@attrs.frozen
class SessionDescription:
    """An SDP as :func:`parse` read it.

    Attributes:
        version: The ``v=`` value.
        origin: The ``o=`` value.
        session_name: The ``s=`` value.
        timing: The ``t=`` value.
        connections: The session-level ``c=`` values.
        attributes: The session-level ``a=`` lines in order, as (name, value); value
            ``None`` for a flag.
        media: The ``m=`` sections, in order.
        line_ends: ``"crlf"``, ``"lf"``, ``"cr"``, ``"mixed"`` or ``"none"`` (a single
            line).
        escaped: The text had literal ``\\r\\n`` sequences instead of line breaks.
        malformed: The (1-based) lines that are not ``<type>=<value>``.
        trailing_whitespace: The lines that end in blanks.
        blank_lines: The empty lines.
        final_line_end: Whether the last line ends with a line end.
    """

    version: str | None
    origin: str | None
    session_name: str | None
    timing: str | None
    connections: tuple[str, ...]
    attributes: tuple[tuple[str, str | None], ...]
    media: tuple[MediaSection, ...]
    line_ends: str
    escaped: bool = False
    malformed: tuple[int, ...] = ()
    trailing_whitespace: tuple[int, ...] = ()
    blank_lines: tuple[int, ...] = ()
    final_line_end: bool = True

    def values(self, name: str) -> list[str]:
        """Session-level ``a=<name>:<value>`` values."""
        return [v for n, v in self.attributes if n == name and v is not None]

    def has(self, name: str) -> bool:
        """Whether the session level has an ``a=<name>`` line (a flag or with a value)."""
        return any(n == name for n, _ in self.attributes)

    @property
    def audio(self) -> MediaSection | None:
        """The first audio section, if any."""
        return next((m for m in self.media if m.kind == "audio"), None)

    @property
    def candidates(self) -> list[Candidate]:
        """The well-formed ``a=candidate`` lines of every section."""
        return [c for m in self.media for c in m.candidates]

    @property
    def addresses(self) -> list[str]:
        """Every address the SDP names for media: ``c=`` lines and candidates."""
        found = [_connection_address(c) for c in self.connections]
        for m in self.media:
            found += [_connection_address(c) for c in m.connections]
            found += [c.address for c in m.candidates]
        return [a for a in found if a]


_LINE = re.compile(r"([a-z])=(.*)\Z", re.DOTALL)
_ESCAPED_BREAK = re.compile(r"\\r\\n|\\n|\\r")


def _unescape(text: str) -> tuple[str, bool]:
    """An SDP that was JSON-escaped twice has no line breaks, only ``\\r\\n`` text."""
    if "\n" in text or "\r" in text or not _ESCAPED_BREAK.search(text):
        return text, False
    return _ESCAPED_BREAK.sub("\r\n", text), True


def parse(text: str) -> SessionDescription:
    """Read ``text`` as an SDP, tolerantly: any line ends, blank lines, unknown lines and a
    double-escaped text are read and recorded for :func:`check` to report.

    Args:
        text: The SDP.

    Returns:
        What it holds, with how it was written (line ends, escaping, malformed lines).

    Raises:
        SdpParseError: ``text`` is not an SDP at all (not a string, or the first line is not
            ``v=``).
    """
    if not isinstance(text, str):
        raise SdpParseError(f"an SDP must be a str, got {type(text).__name__}")
    text, escaped = _unescape(text)
    crlf = text.count("\r\n")
    lone_cr = text.count("\r") - crlf
    lone_lf = text.count("\n") - crlf
    kinds = [k for k, n in (("crlf", crlf), ("cr", lone_cr), ("lf", lone_lf)) if n]
    line_ends = kinds[0] if len(kinds) == 1 else ("mixed" if kinds else "none")
    raw = re.split(r"\r\n|\r|\n", text)
    final_line_end = len(raw) > 1 and raw[-1] == ""
    if final_line_end:
        raw.pop()
    first = next((line.strip() for line in raw if line.strip()), "")
    if not first.startswith("v="):
        raise SdpParseError("this does not look like an SDP: it must start with 'v=0'")

    session: dict[str, str] = {}
    connections: list[str] = []
    attributes: list[tuple[str, str | None]] = []
    sections: list[_Section] = []
    malformed: list[int] = []
    trailing: list[int] = []
    blanks: list[int] = []
    for number, line in enumerate(raw, start=1):
        if not line.strip():
            blanks.append(number)
            continue
        if line != line.rstrip():
            trailing.append(number)
            line = line.rstrip()
        match = _LINE.match(line)
        if match is None:
            malformed.append(number)
            continue
        kind, value = match.group(1), match.group(2)
        if kind == "m":
            fields = value.split()
            port = fields[1].split("/")[0] if len(fields) > 1 else ""
            if len(fields) < 4 or not _digits(port):
                malformed.append(number)
            sections.append(_Section(fields, int(port) if _digits(port) else -1, number))
        elif kind == "a":
            name, sep, attr = value.partition(":")
            pair = (name.strip().lower(), attr.strip() if sep else None)
            (sections[-1].attributes if sections else attributes).append(pair)
        elif kind == "c":
            (sections[-1].connections if sections else connections).append(value.strip())
        elif not sections:
            session.setdefault(kind, value.strip())
    return SessionDescription(
        version=session.get("v"),
        origin=session.get("o"),
        session_name=session.get("s"),
        timing=session.get("t"),
        connections=tuple(connections),
        attributes=tuple(attributes),
        media=tuple(section.build() for section in sections),
        line_ends=line_ends,
        escaped=escaped,
        malformed=tuple(malformed),
        trailing_whitespace=tuple(trailing),
        blank_lines=tuple(blanks),
        final_line_end=final_line_end,
    )


@attrs.define
class _Section:
    fields: list[str]
    port: int
    line: int
    connections: list[str] = attrs.field(factory=list)
    attributes: list[tuple[str, str | None]] = attrs.field(factory=list)

    def build(self) -> MediaSection:
        return MediaSection(
            kind=self.fields[0].lower() if self.fields else "",
            port=self.port,
            proto=self.fields[2] if len(self.fields) > 2 else "",
            formats=tuple(self.fields[3:]),
            line=self.line,
            connections=tuple(self.connections),
            attributes=tuple(self.attributes),
        )


def _digits(text: str) -> bool:
    """ASCII digits only, and not absurdly many: ``str.isdigit`` also takes '²' and '٣'."""
    return text.isascii() and text.isdigit() and len(text) <= 20


def _codec(value: str) -> Codec | None:
    match = re.fullmatch(
        r"([0-9]{1,3})\s+([^/\s]+)/([0-9]{1,6})(?:/([0-9]{1,2}))?", value, re.ASCII
    )
    if match is None:
        return None
    pt, name, clock, channels = match.groups()
    return Codec(pt, name, int(clock), int(channels) if channels else None)


def _candidate(value: str) -> Candidate | None:
    fields = value.split()
    if len(fields) < 8 or fields[6] != "typ":
        return None
    foundation, component, transport, priority, address, port = fields[:6]
    if not (_digits(component) and _digits(priority) and _digits(port)):
        return None
    return Candidate(
        foundation, int(component), transport.lower(), int(priority), address, int(port), fields[7]
    )


def _connection_address(value: str) -> str:
    fields = value.split()
    return fields[2].split("/")[0] if len(fields) >= 3 else ""


def is_documentation_or_loopback(address: str) -> bool:
    """Whether ``address`` reaches nobody: 127.0.0.0/8, ::1, 0.0.0.0/::, and the documentation
    ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32).

    Args:
        address: An IP address, as text (anything else gives ``False``).

    Returns:
        True for a loopback, unspecified or documentation address.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_loopback or ip.is_unspecified:
        return True
    doc = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
    return any(ip in ipaddress.ip_network(net) for net in doc)


# -- the rules ------------------------------------------------------------------------------


def _safe(token: str, limit: int = 24) -> str:
    """A token from the SDP as it may appear in a message: printable, short."""
    token = "".join(ch if ch.isprintable() else "?" for ch in token)
    return token if len(token) <= limit else token[:limit] + "…"


class _Found:
    def __init__(self) -> None:
        self.problems: list[SdpProblem] = []

    def __call__(self, code: str, message: str, line: int | None = None) -> None:
        rule = RULES[code]
        self.problems.append(SdpProblem(code, message, rule.severity, rule.fixable, line))


def _fingerprints(desc: SessionDescription) -> list[tuple[str, str]]:
    """Every (hash function, value) of the SDP, session and media level."""
    values = desc.values("fingerprint") + [v for m in desc.media for v in m.values("fingerprint")]
    found = []
    for value in values:
        algorithm, _, digest = value.partition(" ")
        found.append((algorithm.strip().lower(), digest.strip()))
    return found


_SHA256 = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){31}")


def _setup(desc: SessionDescription, audio: MediaSection | None) -> str | None:
    values = (audio.values("setup") if audio is not None else []) or desc.values("setup")
    return values[0].lower() if values else None


def _ice(desc: SessionDescription, audio: MediaSection | None, name: str) -> str | None:
    values = (audio.values(name) if audio is not None else []) or desc.values(name)
    return values[0] if values else None


def _lite(desc: SessionDescription) -> bool:
    return desc.has("ice-lite")


def _direction(desc: SessionDescription, audio: MediaSection) -> str:
    for name in ("sendrecv", "sendonly", "recvonly", "inactive"):
        if audio.has(name):
            return name
    for name in ("sendrecv", "sendonly", "recvonly", "inactive"):
        if desc.has(name):
            return name
    return "sendrecv"  # RFC 8866 §6.7: the default


def check(
    sdp: str | SessionDescription,
    *,
    role: Literal["offer", "answer"],
    offer: str | SessionDescription | None = None,
    key_exchange: Literal["auto", "dtls", "sdes"] = "auto",
) -> list[SdpProblem]:
    """What WhatsApp would refuse in ``sdp``, or what would break its media.

    Args:
        sdp: The SDP, as text or as :func:`parse` read it.
        role: What the business sends it as: ``"offer"`` for ``connect``, ``"answer"`` for
            ``pre_accept``/``accept``.
        offer: The caller's offer; an answer is then also checked against it.
        key_exchange: ``"sdes"`` for numbers whose ``srtp_key_exchange_protocol`` is SDES
            (``a=crypto`` instead of fingerprints), ``"dtls"``, or ``"auto"``: SDES for an
            SDP with ``a=crypto`` and no fingerprint, DTLS otherwise.

    Returns:
        The problems in the order found; ``[]`` when there are none. A text that is not an
        SDP at all gives one ``not-sdp`` problem.

    Raises:
        InvalidRequestError: ``role`` or ``key_exchange`` is not one of the values above.
    """
    if role not in ("offer", "answer"):
        raise InvalidRequestError(f"role must be 'offer' or 'answer', got {role!r:.20}")
    if key_exchange not in ("auto", "dtls", "sdes"):
        raise InvalidRequestError(
            f"key_exchange must be 'auto', 'dtls' or 'sdes', got {key_exchange!r:.20}"
        )
    found = _Found()
    if isinstance(sdp, SessionDescription):
        desc = sdp
    else:
        try:
            desc = parse(sdp)
        except SdpParseError as error:
            found("not-sdp", str(error))
            return found.problems
    if key_exchange == "auto":
        crypto = desc.values("crypto") + [v for m in desc.media for v in m.values("crypto")]
        key_exchange = "sdes" if crypto and not _fingerprints(desc) else "dtls"
    _framing(desc, found)
    audio = _media(desc, found)
    _security(desc, audio, found, role, key_exchange)
    _ice_rules(desc, audio, found, role)
    if offer is not None and role == "answer":
        try:
            offered = offer if isinstance(offer, SessionDescription) else parse(offer)
        except SdpParseError:
            pass  # the offer is not ours to judge here
        else:
            _against_offer(desc, offered, found)
    return found.problems


def _framing(desc: SessionDescription, found: _Found) -> None:
    if desc.escaped:
        found(
            "double-escaped",
            "the SDP has the text '\\r\\n' instead of line breaks (it was escaped twice); "
            "send the SDP itself as a plain string",
        )
    elif desc.line_ends in ("lf", "cr", "mixed"):
        ends = {"lf": "bare LF", "cr": "lone CR", "mixed": "mixed"}[desc.line_ends]
        found("not-crlf", f"SDP lines must end with CRLF; these have {ends} line ends")
    for number in desc.malformed:
        found("malformed-line", "this line is not '<letter>=<value>'", number)
    if desc.version is not None and desc.version.strip() != "0":
        found("version-not-0", "the SDP version must be 'v=0'")
    if desc.origin is None:
        found("missing-origin", "the SDP has no 'o=' (origin) line")
    if desc.session_name is None:
        found("missing-session-name", "the SDP has no 's=' line (use 's=-')")
    if desc.timing is None:
        found("missing-timing", "the SDP has no 't=' line (use 't=0 0')")
    if desc.media and not desc.connections and not all(m.connections for m in desc.media):
        found(
            "missing-connection",
            "no 'c=' line: one is needed at session level or in every media section "
            "(use 'c=IN IP4 0.0.0.0' with ICE)",
        )
    if desc.trailing_whitespace:
        found(
            "trailing-whitespace",
            "some lines end with spaces or tabs",
            desc.trailing_whitespace[0],
        )
    if desc.blank_lines:
        found("blank-line", "the SDP has blank lines", desc.blank_lines[0])
    if not desc.final_line_end and not desc.escaped:
        found("no-final-crlf", "the last line does not end with CRLF")


def _media(desc: SessionDescription, found: _Found) -> MediaSection | None:
    if not desc.media:
        found("no-media", "the SDP has no media section ('m=audio ...'): there is nothing to call")
        return None
    if len(desc.media) > 1:
        kinds = ", ".join(_safe(m.kind or "?", 12) for m in desc.media[:6])
        found(
            "several-media-sections",
            f"the SDP has {len(desc.media)} media sections ({kinds}); WhatsApp takes exactly one "
            "audio section",
            desc.media[1].line,
        )
    audio = desc.audio
    if audio is None:
        found(
            "no-audio",
            f"the SDP has no audio section (its media is {_safe(desc.media[0].kind or '?', 12)})",
            desc.media[0].line,
        )
        return None
    if audio.port == 0:
        found("audio-port-zero", "the audio section has port 0, which declines it", audio.line)
    codecs = audio.codecs
    for value in audio.values("rtpmap"):
        if _codec(value) is None:
            found("rtpmap-malformed", "an 'a=rtpmap' line is not '<pt> <codec>/<clock>'")
    named = {c.name.lower(): c for c in codecs.values() if c.payload_type in audio.formats}
    opus = [
        c for c in codecs.values() if c.name.lower() == "opus" and c.payload_type in audio.formats
    ]
    if not opus:
        static_g711 = {"0", "8"} & set(audio.formats)
        if "pcmu" in named or "pcma" in named or static_g711:
            found(
                "g711-only",
                "the audio offers G.711 (PCMU/PCMA) but not Opus: WhatsApp takes it only with "
                "audio.additional_codecs enabled, and transcodes (more latency)",
                audio.line,
            )
        else:
            found(
                "no-opus",
                "the audio section has no Opus at 48000 Hz ('a=rtpmap:<pt> opus/48000/2'), the "
                "codec WhatsApp speaks",
                audio.line,
            )
    elif all(c.clock_rate != 48000 for c in opus):
        found("opus-not-48000", "Opus must have a 48000 Hz RTP clock ('opus/48000/2')", audio.line)
    for pt in audio.formats:
        if _digits(pt) and int(pt) >= 96 and pt not in codecs:
            found(
                "payload-without-rtpmap",
                f"payload type {_safe(pt, 4)} is listed on the m= line but has no 'a=rtpmap'",
                audio.line,
            )
    events = [c for c in codecs.values() if c.name.lower() == "telephone-event"]
    events = [c for c in events if c.payload_type in audio.formats]
    if events and all(c.clock_rate != 8000 for c in events):
        clocks = ", ".join(sorted({str(c.clock_rate) for c in events}))
        found(
            "telephone-event-clock",
            f"telephone-event (DTMF) is offered at {clocks} Hz; WhatsApp only takes an 8000 Hz "
            "clock, so digits will not arrive",
            audio.line,
        )
    direction = _direction(desc, audio)
    if direction != "sendrecv":
        found(
            "direction-not-sendrecv",
            f"the audio is '{direction}': both sides must send (a call with no audio from the "
            "business ends after 20 s)",
            audio.line,
        )
    if not audio.has("rtcp-mux"):
        found(
            "no-rtcp-mux",
            "no 'a=rtcp-mux': WebRTC sends RTCP on the RTP port, and WhatsApp expects it there",
            audio.line,
        )
    return audio


def _security(
    desc: SessionDescription,
    audio: MediaSection | None,
    found: _Found,
    role: str,
    key_exchange: str,
) -> None:
    if audio is None:
        return
    proto = audio.proto.upper()
    if key_exchange == "sdes":
        if proto not in ("RTP/SAVPF", "RTP/SAVP"):
            found(
                "profile-not-savpf",
                f"the audio profile is {_safe(audio.proto)}; SDES-SRTP needs RTP/SAVPF",
                audio.line,
            )
        if not audio.values("crypto") and not desc.values("crypto"):
            found("no-crypto", "SDES-SRTP needs an 'a=crypto' line with the key", audio.line)
        return
    if proto == "RTP/SAVPF":
        found(
            "profile-legacy",
            "the audio profile is RTP/SAVPF; DTLS-SRTP is 'UDP/TLS/RTP/SAVPF'",
            audio.line,
        )
    elif proto != "UDP/TLS/RTP/SAVPF":
        found(
            "profile-not-savpf",
            f"the audio profile is {_safe(audio.proto) or 'missing'}; WhatsApp needs encrypted "
            "media, 'UDP/TLS/RTP/SAVPF' (DTLS-SRTP)",
            audio.line,
        )
    prints = _fingerprints(desc)
    if not prints:
        found(
            "no-fingerprint",
            "No fingerprint found in SDP: DTLS-SRTP needs one sha-256 'a=fingerprint'",
        )
    else:
        sha256 = [d for a, d in prints if a == "sha-256"]
        if not sha256:
            names = ", ".join(sorted({_safe(a, 10) for a, _ in prints}))
            found(
                "fingerprint-not-sha256",
                f"the fingerprint is {names}; WhatsApp only takes sha-256",
            )
        elif len(prints) > 1:
            names = ", ".join(_safe(a, 10) for a, _ in prints[:6])
            several = len(set(sha256)) > 1
            found(
                "several-fingerprints",
                f"the SDP has {len(prints)} fingerprints ({names}); WhatsApp takes exactly one, "
                "sha-256"
                + (
                    " - and these are different sha-256 values, so keep only your certificate's"
                    if several
                    else " (normalize() keeps only it)"
                ),
            )
        for digest in sha256:
            if not _SHA256.fullmatch(digest):
                found(
                    "fingerprint-malformed",
                    "the sha-256 fingerprint is not 32 hex bytes separated by ':'",
                )
                break
    setup = _setup(desc, audio)
    if setup is None:
        found(
            "no-setup",
            "no 'a=setup': the DTLS roles are undecided (an offer says actpass, an answer active)",
            audio.line,
        )
    elif role == "offer" and setup != "actpass":
        found(
            "setup-offer-not-actpass",
            f"an offer must say 'a=setup:actpass', not {_safe(setup, 10)}",
            audio.line,
        )
    elif role == "answer" and setup not in ("active", "passive"):
        found(
            "setup-answer-actpass",
            f"an answer must say 'a=setup:active' (or passive), not {_safe(setup, 10)}",
            audio.line,
        )


def _ice_rules(
    desc: SessionDescription, audio: MediaSection | None, found: _Found, role: str
) -> None:
    if audio is None:
        return
    ufrag, pwd = _ice(desc, audio, "ice-ufrag"), _ice(desc, audio, "ice-pwd")
    if ufrag is None or pwd is None:
        missing = " and ".join(n for n, v in (("ice-ufrag", ufrag), ("ice-pwd", pwd)) if v is None)
        found(
            "no-ice-credentials", f"no 'a={missing}': ICE cannot check the connection", audio.line
        )
    elif len(ufrag) < 4 or len(pwd) < 22:
        # Lengths only: the values are credentials and never go into a message.
        found(
            "ice-credentials-short",
            f"ICE credentials are too short (ufrag {len(ufrag)} chars, at least 4; pwd "
            f"{len(pwd)} chars, at least 22)",
            audio.line,
        )
    lines = audio.values("candidate")
    candidates = audio.candidates
    if not lines:
        found(
            "no-candidates",
            "no 'a=candidate' lines: WhatsApp does not trickle, so every candidate must be in "
            "the SDP, or media may never connect",
            audio.line,
        )
    else:
        if len(candidates) < len(lines):
            found(
                "candidate-malformed",
                f"{len(lines) - len(candidates)} of the {len(lines)} 'a=candidate' lines cannot "
                "be read (RFC 8839: foundation component transport priority address port typ "
                "type)",
                audio.line,
            )
        if candidates and not any(c.transport == "udp" for c in candidates):
            found("no-udp-candidate", "no UDP candidate: WhatsApp sends media over UDP", audio.line)
        if not audio.has("end-of-candidates") and not desc.has("end-of-candidates"):
            found(
                "no-end-of-candidates",
                "no 'a=end-of-candidates': the far side may wait for more candidates",
                audio.line,
            )
    if _lite(desc) and role == "offer":
        found(
            "ice-lite-business",
            "the SDP says a=ice-lite: WhatsApp is ICE-lite, so a business offer must come from "
            "a full ICE agent (ignore this for an offer that is WhatsApp's own)",
        )


def _against_offer(desc: SessionDescription, offered: SessionDescription, found: _Found) -> None:
    if len(desc.media) != len(offered.media):
        found(
            "answer-media-count",
            f"the answer has {len(desc.media)} media sections, the offer {len(offered.media)}: "
            "there must be one answer section per offered one",
        )
    if _lite(desc) and _lite(offered):
        found(
            "both-ice-lite",
            "both the offer and the answer say a=ice-lite: nobody would run the ICE checks",
        )
    audio, theirs = desc.audio, offered.audio
    if audio is None or theirs is None:
        return
    same_ufrag = _ice(desc, audio, "ice-ufrag") == _ice(offered, theirs, "ice-ufrag")
    if same_ufrag and _fingerprints(desc) == _fingerprints(offered):
        found(
            "answer-echoes-offer",
            "the answer has the offer's own ICE credentials and fingerprint: it is the caller's "
            "offer sent back, not your stack's answer",
        )
    roles = (_setup(offered, theirs), _setup(desc, audio))
    if roles in (("active", "active"), ("passive", "passive")):
        found(
            "setup-conflict",
            f"the offer and the answer both say a=setup:{roles[0]}: one side must be active, "
            "the other passive, or DTLS never starts",
            audio.line,
        )
    mine, offered_codecs = audio.codecs, theirs.codecs
    for pt in audio.formats:
        if pt not in theirs.formats:
            found(
                "answer-payload-not-in-offer",
                f"the answer's payload type {_safe(pt, 4)} is not in the offer; answer only "
                "with payload types the offer lists",
                audio.line,
            )
            continue
        a, b = mine.get(pt), offered_codecs.get(pt)
        if (
            a is not None
            and b is not None
            and (a.name.lower() != b.name.lower() or a.clock_rate != b.clock_rate)
        ):
            found(
                "answer-codec-mismatch",
                f"payload type {_safe(pt, 4)} is {_safe(a.name, 16)}/{a.clock_rate} in the answer "
                f"but {_safe(b.name, 16)}/{b.clock_rate} in the offer",
                audio.line,
            )


# -- normalize ------------------------------------------------------------------------------


def normalize(sdp: str) -> str:
    """``sdp`` with what can be fixed safely fixed: a double-escaped text un-escaped, CRLF line
    ends (and one at the end), no trailing whitespace or blank lines, and only the sha-256
    fingerprint kept when there are several and exactly one sha-256 value among them. Never
    touches the media: codecs, candidates, credentials and roles stay as they are.

    Args:
        sdp: The SDP.

    Returns:
        The fixed SDP (the problems marked ``fixable`` are gone).

    Raises:
        SdpParseError: ``sdp`` is not an SDP.
    """
    desc = parse(sdp)  # raises for what is not an SDP at all
    text, _ = _unescape(sdp)
    lines = [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]
    lines = [line for line in lines if line]
    prints = _fingerprints(desc)
    sha256 = {d for a, d in prints if a == "sha-256"}
    if len(prints) > 1 and len(sha256) == 1:
        kept = False
        out = []
        for line in lines:
            if line.startswith("a=fingerprint:"):
                algorithm = line[len("a=fingerprint:") :].split(" ", 1)[0].strip().lower()
                if algorithm != "sha-256" or kept:
                    continue
                kept = True
            out.append(line)
        lines = out
    return "\r\n".join(lines) + "\r\n"


# -- the client's check before sending ------------------------------------------------------


# pre_accept and accept send the same SDP, and a checked SDP costs ~0.1 ms: the last few
# results are kept, by a digest of the SDP (not the SDP: it holds ICE credentials).
_RECENT: dict[bytes, tuple[SdpProblem, ...]] = {}
_RECENT_MAX = 256
_RECENT_LOCK = threading.Lock()


def _sending_problems(sdp: str, role: str) -> tuple[SdpProblem, ...]:
    key = hashlib.blake2b(f"{role}\0{sdp}".encode(errors="surrogatepass"), digest_size=16).digest()
    with _RECENT_LOCK:
        found = _RECENT.get(key)
    if found is not None:
        return found
    checked = check(sdp, role="offer" if role == "offer" else "answer")
    found = tuple(p for p in checked if p.severity is not Severity.WARNING)
    with _RECENT_LOCK:
        if len(_RECENT) >= _RECENT_MAX:
            del _RECENT[next(iter(_RECENT))]
        _RECENT[key] = found
    return found


def _before_sending(
    sdp: str, *, role: Literal["offer", "answer"], mode: SdpCheck, action: str
) -> None:
    """What the client does with ``sdp`` before ``action`` sends it, as ``sdp_check`` says:
    nothing, warn (:class:`SdpWarning`), or refuse (:class:`InvalidRequestError`). Only
    problems that WhatsApp refuses or that break media count; ``warning`` ones do not."""
    if mode is SdpCheck.OFF:
        return
    problems = _sending_problems(sdp, role)
    if not problems:
        return
    listed = "; ".join(str(p) for p in problems)
    fixable = any(p.fixable for p in problems)
    text = (
        f"the SDP {role} for {action} has {len(problems)} problem(s) WhatsApp refuses or that "
        f"break media: {listed}"
        + (" (d360calling.sdp.normalize() fixes the fixable ones)" if fixable else "")
    )
    if mode is SdpCheck.REFUSE:
        raise InvalidRequestError(text + "; nothing was sent (sdp_check='refuse')")
    warnings.warn(SdpWarning(text + " - sent anyway (sdp_check='warn')"), stacklevel=4)
