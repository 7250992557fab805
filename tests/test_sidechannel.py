"""The stderr side channel's parser: frames out, everything else stays the program's text."""

from sandbox.sidechannel import MARK, SideChannel

KEY = b"ab" * 16
OTHER = b"cd" * 16


def frame(key: bytes, kind: str, payload: bytes) -> bytes:
    return MARK + key + b":" + kind.encode() + b":%d\n" % len(payload) + payload


def feed_all(channel: SideChannel, pieces: list[bytes]) -> tuple[bytes, list]:
    text, frames = [], []
    for piece in pieces:
        t, f = channel.feed(piece)
        text.append(t)
        frames += f
    text.append(channel.flush())
    return b"".join(text), frames


def test_a_frame_leaves_the_text_and_arrives_whole_byte_by_byte() -> None:
    data = b"before\n" + frame(KEY, "image", b"\x89PNG\x00\x1e" * 50) + b"after\n"
    for size in (1, 3, 7, len(data)):
        channel = SideChannel({KEY: "image"}, max_payload=1000)
        text, frames = feed_all(channel, [data[i : i + size] for i in range(0, len(data), size)])
        assert text == b"before\nafter\n"
        assert [(f.kind, f.payload) for f in frames] == [("image", b"\x89PNG\x00\x1e" * 50)]


def test_a_frame_with_a_wrong_key_or_kind_stays_text() -> None:
    forged = frame(OTHER, "image", b"x") + frame(KEY, "usage", b"{}")
    channel = SideChannel({KEY: "image"}, max_payload=1000)
    text, frames = feed_all(channel, [forged])
    assert frames == []
    assert text == forged


def test_a_payload_over_the_cap_is_skipped_with_its_size() -> None:
    channel = SideChannel({KEY: "image"}, max_payload=10)
    text, frames = feed_all(channel, [frame(KEY, "image", b"y" * 100), b"tail"])
    assert text == b"tail"
    assert [(f.payload, f.size) for f in frames] == [(None, 100)]


def test_a_mark_without_a_header_and_a_cut_frame() -> None:
    channel = SideChannel({KEY: "image"}, max_payload=10)
    text, frames = feed_all(channel, [MARK + b"not a header\n" + MARK[:4]])
    assert text == MARK + b"not a header\n" + MARK[:4]
    channel = SideChannel({KEY: "image"}, max_payload=10)
    text, frames = feed_all(channel, [frame(KEY, "image", b"12345")[:-2]])
    assert (text, frames) == (b"", [])


def test_an_empty_frame_arrives_at_once_even_as_the_last_bytes() -> None:
    # init's end frame on stdout: nothing follows it until the container is removed.
    data = b"hello\n" + frame(KEY, "end", b"")
    for size in (1, 5, len(data)):
        channel = SideChannel({KEY: "end"}, max_payload=0)
        text, frames = [], []
        for i in range(0, len(data), size):
            t, f = channel.feed(data[i : i + size])
            text.append(t)
            frames += f
        assert b"".join(text) == b"hello\n"
        assert [(f.kind, f.payload) for f in frames] == [("end", b"")]
