"""d360calling.sdp: every rule on its own, normalize, parse, and that no message repeats a
credential from the SDP."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d360calling import InvalidRequestError, sdp
from d360calling.sdp import Severity
from d360calling.testing import sample_answer, sample_offer

OFFER = sample_offer("rules")
ANSWER = sample_answer("rules", offer=OFFER)
ICE_PWD = re.search(r"a=ice-pwd:(\S+)", ANSWER).group(1)  # type: ignore[union-attr]
ICE_UFRAG = re.search(r"a=ice-ufrag:(\S+)", ANSWER).group(1)  # type: ignore[union-attr]

# aiortc 1.16's answer as it comes out of the box (shape; addresses documentation range).
AIORTC_FINGERPRINTS = (
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
    "a=fingerprint:sha-384 " + ":".join(["CD"] * 48) + "\r\n"
    "a=fingerprint:sha-512 " + ":".join(["EF"] * 64) + "\r\n"
)


def codes(text: str | sdp.SessionDescription, **kwargs: object) -> list[str]:
    return [p.code for p in sdp.check(text, **kwargs)]  # type: ignore[arg-type]


def lines_of(text: str) -> list[str]:
    return text.split("\r\n")[:-1]


def without(text: str, prefix: str) -> str:
    return "".join(line + "\r\n" for line in lines_of(text) if not line.startswith(prefix))


def replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def add_after(text: str, prefix: str, extra: str) -> str:
    out = []
    for line in lines_of(text):
        out.append(line)
        if line.startswith(prefix):
            out.append(extra)
    return "".join(line + "\r\n" for line in out)


def test_the_samples_pass_every_rule() -> None:
    assert codes(OFFER, role="offer") == ["ice-lite-business"]  # WhatsApp's own offer is lite
    assert codes(ANSWER, role="answer", offer=OFFER) == []
    assert codes(sample_answer(), role="answer") == []


def test_every_rule_has_a_severity_and_a_source_and_a_test() -> None:
    tested = Path(__file__).read_text()
    for code, rule in sdp.RULES.items():
        assert rule.code == code
        assert isinstance(rule.severity, Severity)
        assert rule.source
        assert f'"{code}"' in tested, f"no test names the rule {code}"


# Each case: (what to do to the clean answer, the code that must be reported).
ANSWER_CASES: list[tuple[str, Callable[[str], str], str]] = [
    ("LF line ends", lambda s: s.replace("\r\n", "\n"), "not-crlf"),
    ("lone CR", lambda s: s.replace("\r\n", "\r"), "not-crlf"),
    ("mixed", lambda s: s.replace("s=-\r\n", "s=-\n"), "not-crlf"),
    ("double-escaped", lambda s: s.replace("\r\n", "\\r\\n"), "double-escaped"),
    ("malformed line", lambda s: add_after(s, "s=", "this is no sdp line"), "malformed-line"),
    ("version", lambda s: replace(s, "v=0", "v=1"), "version-not-0"),
    ("no o=", lambda s: without(s, "o="), "missing-origin"),
    ("no s=", lambda s: without(s, "s="), "missing-session-name"),
    ("no t=", lambda s: without(s, "t="), "missing-timing"),
    ("no c=", lambda s: without(s, "c="), "missing-connection"),
    ("trailing space", lambda s: replace(s, "s=-\r\n", "s=- \r\n"), "trailing-whitespace"),
    ("blank line", lambda s: replace(s, "s=-\r\n", "s=-\r\n\r\n"), "blank-line"),
    ("no final CRLF", lambda s: s[:-2], "no-final-crlf"),
    ("no media", lambda s: s[: s.index("m=audio")], "no-media"),
    (
        "two media sections",
        lambda s: s + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n",
        "several-media-sections",
    ),
    ("video only", lambda s: replace(s, "m=audio", "m=video"), "no-audio"),
    ("port 0", lambda s: replace(s, "m=audio 9 ", "m=audio 0 "), "audio-port-zero"),
    ("no Opus", lambda s: replace(s, "opus/48000/2", "ISAC/16000"), "no-opus"),
    ("G.711 only", lambda s: replace(s, "opus/48000/2", "PCMU/8000"), "g711-only"),
    ("Opus at 16 kHz", lambda s: replace(s, "opus/48000/2", "opus/16000/2"), "opus-not-48000"),
    (
        "bad rtpmap",
        lambda s: add_after(s, "a=rtpmap:111", "a=rtpmap:112 nonsense"),
        "rtpmap-malformed",
    ),
    (
        "payload without rtpmap",
        lambda s: replace(s, "SAVPF 111 126", "SAVPF 111 126 100"),
        "payload-without-rtpmap",
    ),
    (
        "DTMF at 48 kHz",
        lambda s: replace(s, "telephone-event/8000", "telephone-event/48000"),
        "telephone-event-clock",
    ),
    ("plain RTP", lambda s: replace(s, "UDP/TLS/RTP/SAVPF", "RTP/AVP"), "profile-not-savpf"),
    ("legacy profile", lambda s: replace(s, "UDP/TLS/RTP/SAVPF", "RTP/SAVPF"), "profile-legacy"),
    ("no fingerprint", lambda s: without(s, "a=fingerprint"), "no-fingerprint"),
    (
        "aiortc's three fingerprints",
        lambda s: without(s, "a=fingerprint").replace("a=setup", AIORTC_FINGERPRINTS + "a=setup"),
        "several-fingerprints",
    ),
    (
        "sha-1 only",
        lambda s: re.sub(
            r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-1 " + "AB:" * 19 + "AB", s
        ),
        "fingerprint-not-sha256",
    ),
    (
        "sha-512 only",
        lambda s: re.sub(
            r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-512 " + "AB:" * 63 + "AB", s
        ),
        "fingerprint-not-sha256",
    ),
    (
        "short sha-256",
        lambda s: re.sub(r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-256 AB:CD", s),
        "fingerprint-malformed",
    ),
    ("no setup", lambda s: without(s, "a=setup"), "no-setup"),
    (
        "answer actpass",
        lambda s: replace(s, "a=setup:active", "a=setup:actpass"),
        "setup-answer-actpass",
    ),
    ("no ice-pwd", lambda s: without(s, "a=ice-pwd"), "no-ice-credentials"),
    ("no ice-ufrag", lambda s: without(s, "a=ice-ufrag"), "no-ice-credentials"),
    ("short ice-pwd", lambda s: replace(s, ICE_PWD, "short"), "ice-credentials-short"),
    ("trickle only", lambda s: without(without(s, "a=candidate"), "a=end-of"), "no-candidates"),
    (
        "unreadable candidate",
        lambda s: add_after(s, "a=candidate", "a=candidate:x 1 udp"),
        "candidate-malformed",
    ),
    ("TCP only", lambda s: replace(s, " 1 udp ", " 1 tcp "), "no-udp-candidate"),
    ("no end-of-candidates", lambda s: without(s, "a=end-of-candidates"), "no-end-of-candidates"),
    ("recvonly", lambda s: replace(s, "a=sendrecv", "a=recvonly"), "direction-not-sendrecv"),
    ("inactive", lambda s: replace(s, "a=sendrecv", "a=inactive"), "direction-not-sendrecv"),
    ("no rtcp-mux", lambda s: without(s, "a=rtcp-mux"), "no-rtcp-mux"),
]


@pytest.mark.parametrize(
    ("change", "code"),
    [pytest.param(change, code, id=name) for name, change, code in ANSWER_CASES],
)
def test_each_rule_on_an_answer(change: Callable[[str], str], code: str) -> None:
    problems = sdp.check(change(ANSWER), role="answer", offer=OFFER)
    found = [p for p in problems if p.code == code]
    assert found, [p.code for p in problems]
    rule = sdp.RULES[code]
    assert (found[0].severity, found[0].fixable) == (rule.severity, rule.fixable)
    assert found[0].message
    assert "\n" not in found[0].message
    for problem in problems:  # never a credential in a message
        assert ICE_PWD not in str(problem)
        assert ICE_UFRAG not in str(problem)


def test_an_offer_from_the_business_must_be_actpass() -> None:
    business_offer = without(sample_answer("mine"), "a=ice-lite").replace(
        "a=setup:active", "a=setup:actpass"
    )
    assert codes(business_offer, role="offer") == []
    assert "setup-offer-not-actpass" in codes(sample_answer("mine"), role="offer")
    assert "setup-answer-actpass" not in codes(sample_answer("mine"), role="offer")


def test_an_ice_lite_business_offer_is_flagged_but_not_refused() -> None:
    (problem,) = sdp.check(OFFER, role="offer")
    assert (problem.code, problem.severity) == ("ice-lite-business", Severity.WARNING)


def test_an_answer_is_checked_against_its_offer() -> None:
    # Payload types the offer never listed.
    moved = ANSWER.replace("SAVPF 111 126", "SAVPF 109 126").replace("a=rtpmap:111", "a=rtpmap:109")
    moved = moved.replace("a=fmtp:111", "a=fmtp:109")
    assert "answer-payload-not-in-offer" in codes(moved, role="answer", offer=OFFER)
    assert "answer-payload-not-in-offer" not in codes(moved, role="answer")  # no offer given
    # The same payload type, another codec.
    swapped = ANSWER.replace("a=rtpmap:126 telephone-event/8000", "a=rtpmap:126 PCMA/8000")
    assert "answer-codec-mismatch" in codes(swapped, role="answer", offer=OFFER)
    # Two sections for the offer's one.
    extra = ANSWER + "m=video 0 UDP/TLS/RTP/SAVPF 96\r\n"
    assert "answer-media-count" in codes(extra, role="answer", offer=OFFER)
    # The offer sent back as the answer.
    echoed = OFFER.replace("a=setup:actpass", "a=setup:active")
    assert "answer-echoes-offer" in codes(echoed, role="answer", offer=OFFER)
    # DTLS roles that do not complement each other.
    active_offer = OFFER.replace("a=setup:actpass", "a=setup:active")
    assert "setup-conflict" in codes(ANSWER, role="answer", offer=active_offer)
    passive = ANSWER.replace("a=setup:active", "a=setup:passive")
    assert "setup-conflict" not in codes(passive, role="answer", offer=active_offer)
    assert "setup-conflict" not in codes(ANSWER, role="answer", offer=OFFER)  # actpass
    # Both lite: nobody runs the checks.
    lite = ANSWER.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n")
    assert "both-ice-lite" in codes(lite, role="answer", offer=OFFER)
    assert "both-ice-lite" not in codes(ANSWER, role="answer", offer=OFFER)


def test_sdes_wants_a_crypto_line_and_never_echoes_the_key() -> None:
    key = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    sdes = without(without(ANSWER, "a=fingerprint"), "a=setup").replace(
        "UDP/TLS/RTP/SAVPF", "RTP/SAVPF"
    )
    assert "no-crypto" in codes(sdes, role="answer", key_exchange="sdes")
    with_key = sdes + f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{key}\r\n"
    assert codes(with_key, role="answer") == []  # auto: a=crypto and no fingerprint is SDES
    assert codes(with_key, role="answer", key_exchange="sdes") == []
    problems = sdp.check(with_key, role="answer", key_exchange="dtls")
    assert "no-fingerprint" in [p.code for p in problems]
    assert all(key not in str(p) for p in problems)


def test_messages_do_not_carry_values_from_a_hostile_sdp() -> None:
    hostile = ANSWER.replace("UDP/TLS/RTP/SAVPF", "X" * 500 + "\x1b[31m")
    (problem,) = [p for p in sdp.check(hostile, role="answer") if p.code == "profile-not-savpf"]
    assert len(problem.message) < 200
    assert "\x1b" not in problem.message


def test_garbage_is_not_sdp() -> None:
    for garbage in ("", "hello", "\r\n\r\n", "<html>", "o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n"):
        with pytest.raises(sdp.SdpParseError):
            sdp.parse(garbage)
        assert codes(garbage, role="answer") == ["not-sdp"]
        with pytest.raises(sdp.SdpParseError):
            sdp.normalize(garbage)
    with pytest.raises(InvalidRequestError):  # SdpParseError is one
        sdp.parse(b"v=0\r\n")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError, match="role"):
        sdp.check(ANSWER, role="offr")  # type: ignore[arg-type]


def test_parse_reads_the_shape() -> None:
    desc = sdp.parse(OFFER)
    assert (desc.version, desc.session_name, desc.line_ends) == ("0", "-", "crlf")
    assert desc.has("ice-lite")
    assert desc.audio is not None
    assert desc.audio.proto == "UDP/TLS/RTP/SAVPF"
    assert desc.audio.formats == ("111", "126")
    assert desc.audio.codecs["111"] == sdp.Codec("111", "opus", 48000, 2)
    assert [c.address for c in desc.candidates] == ["127.0.0.1", "::1"]
    assert set(desc.addresses) == {"0.0.0.0", "127.0.0.1", "::1"}
    assert sdp.parse(OFFER.replace("\r\n", "\n")).line_ends == "lf"
    escaped = sdp.parse(OFFER.replace("\r\n", "\\r\\n"))
    assert escaped.escaped
    assert escaped.audio is not None


def test_normalize_fixes_what_is_safe_and_nothing_else() -> None:
    aiortc = without(ANSWER, "a=fingerprint").replace("a=setup", AIORTC_FINGERPRINTS + "a=setup")
    messy = aiortc.replace("\r\n", "\n").replace("s=-\n", "s=-  \n\n")
    assert {p.code for p in sdp.check(messy, role="answer") if p.fixable} == {
        "not-crlf",
        "several-fingerprints",
        "trailing-whitespace",
        "blank-line",
    }
    fixed = sdp.normalize(messy)
    assert codes(fixed, role="answer") == []
    assert fixed.count("a=fingerprint:") == 1
    assert "a=fingerprint:sha-256 AB:" in fixed
    # Everything else is the SDP as it was, line for line.
    kept = [line for line in lines_of(aiortc) if "sha-384" not in line and "sha-512" not in line]
    assert lines_of(fixed) == kept
    assert sdp.normalize(ANSWER.replace("\r\n", "\\r\\n")) == ANSWER
    assert sdp.normalize(ANSWER[:-2]) == ANSWER
    assert sdp.normalize(ANSWER) == ANSWER  # idempotent on a clean SDP


def test_normalize_leaves_what_it_cannot_decide() -> None:
    two = ANSWER.replace(
        "a=setup", "a=fingerprint:sha-256 " + ":".join(["01"] * 32) + "\r\na=setup"
    )  # two different sha-256 values: which certificate is yours is not ours to guess
    assert normalize_count(two) == 2
    only_sha1 = re.sub(
        r"a=fingerprint:sha-256 \S+", "a=fingerprint:sha-1 " + "AB:" * 19 + "AB", ANSWER
    )
    assert sdp.normalize(only_sha1) == only_sha1
    media = ANSWER.replace("telephone-event/8000", "telephone-event/48000")
    assert sdp.normalize(media) == media


def normalize_count(text: str) -> int:
    return sdp.normalize(text).count("a=fingerprint:")


def test_documentation_and_loopback_addresses() -> None:
    for address in ("127.0.0.1", "127.9.9.9", "::1", "0.0.0.0", "192.0.2.10", "2001:db8::1"):
        assert sdp.is_documentation_or_loopback(address), address
    for address in ("157.240.0.10", "8.8.8.8", "10.0.0.1", "2a03:2880::1", "host.local", ""):
        assert not sdp.is_documentation_or_loopback(address), address


def test_sdp_check_modes() -> None:
    assert [m.value for m in sdp.SdpCheck] == ["off", "warn", "refuse"]
    assert issubclass(sdp.SdpWarning, UserWarning)


@given(text=st.one_of(st.text(max_size=300), st.text(max_size=300).map(lambda t: "v=0\r\n" + t)))
def test_any_text_gives_problems_or_a_parse_error_never_a_crash(text: str) -> None:
    for role in ("offer", "answer"):
        problems = sdp.check(text, role=role, offer=text)
        assert all(isinstance(p, sdp.SdpProblem) and p.code in sdp.RULES for p in problems)
    try:
        fixed = sdp.normalize(text)
    except sdp.SdpParseError:
        return
    assert sdp.normalize(fixed) == fixed  # idempotent
    assert fixed.endswith("\r\n")
    assert not {p.code for p in sdp.check(fixed, role="answer")} & {
        "not-crlf",
        "double-escaped",
        "trailing-whitespace",
        "blank-line",
        "no-final-crlf",
    }


@given(
    st.lists(
        st.sampled_from(
            ["m=audio ² x 1", "a=candidate:1 ² udp 1 ::1 9 typ host", "a=rtpmap:\u0661 x/1"]
        ),
        max_size=4,
    )
)
def test_unicode_digits_do_not_crash_the_parser(lines: list[str]) -> None:
    text = "".join(line + "\r\n" for line in [*lines_of(ANSWER), *lines])
    assert isinstance(sdp.check(text, role="answer"), list)
