"""The byte-level SSE decoder (cache.sse) against the event-stream format, for any chunking."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from cache.sse import SSE, SSEDecoder

text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
    max_size=30,
)
events = st.lists(
    st.tuples(
        st.sampled_from(["poke", "hello", "message", ""]),
        st.lists(text, min_size=1, max_size=3),  # data lines
        st.one_of(st.none(), st.text(alphabet="0123456789.abc", max_size=12)),  # id
    ),
    max_size=6,
)


def encode(evs: list[tuple[str, list[str], str | None]], eol: str, comments: bool) -> bytes:
    out = []
    for name, data, eid in evs:
        if comments:
            out.append(": ping" + eol)
        if name:
            out.append(f"event: {name}{eol}")
        if eid is not None:
            out.append(f"id:{eid}{eol}")
        out.extend(f"data: {line}{eol}" for line in data)
        out.append(eol)
    return "".join(out).encode()


def expected(evs: list[tuple[str, list[str], str | None]]) -> list[SSE]:
    last = ""
    out = []
    for name, data, eid in evs:
        if eid is not None:
            last = eid
        out.append(SSE(name or "message", "\n".join(data).encode(), last))
    return out


@settings(deadline=None, max_examples=300)
@given(
    evs=events,
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    comments=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_any_chunking_gives_the_events(
    evs: list[tuple[str, list[str], str | None]], eol: str, comments: bool, cuts: list[int]
) -> None:
    raw = encode(evs, eol, comments)
    bounds = sorted({min(c, len(raw)) for c in cuts} | {0, len(raw)})
    dec = SSEDecoder()
    got: list[SSE] = []
    for a, b in itertools.pairwise(bounds):
        got += dec.feed(raw[a:b])
    got += dec.close()
    assert got == expected(evs)


def test_field_rules() -> None:
    dec = SSEDecoder()
    raw = (
        b"data\n\n"  # a field without a colon: empty data, dispatched
        b"event:x\ndata:  two spaces\n\n"  # only one leading space is dropped
        b"id: a\0b\ndata: nul id ignored\n\n"
        b"event: no-data\n\n"  # no data: no event
        b"retry: 10\nunknown: y\ndata: z\n\n"
    )
    assert dec.feed(raw) == [
        SSE("message", b"", ""),
        SSE("x", b" two spaces", ""),
        SSE("message", b"nul id ignored", ""),
        SSE("message", b"z", ""),
    ]


def test_an_event_cut_off_at_the_end_is_dropped() -> None:
    dec = SSEDecoder()
    assert dec.feed(b"event: poke\ndata: {}\n") == []
    assert dec.close() == []


def test_a_large_event_in_small_chunks() -> None:
    payload = b"x" * 3_000_000
    raw = b"event: poke\r\ndata: " + payload + b"\r\n\r\n"
    dec = SSEDecoder()
    got: list[SSE] = []
    for i in range(0, len(raw), 65536):
        got += dec.feed(raw[i : i + 65536])
    assert got == [SSE("poke", payload, "")]
