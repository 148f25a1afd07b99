"""CPU the frame reader spends on a hostile peer's frame, cut into tiny reads.

    python -m bench.frames [--size 60000] [--piece 1]

Feeds one masked text frame of SIZE bytes to server/live/frames.py's
FrameReader PIECE bytes at a time (as a peer sending one small TCP segment
at a time makes the server read it) and prints the CPU-seconds it took.
"""

from __future__ import annotations

import argparse
import os
import time

from server.live.frames import FrameReader


def masked_text_frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    size = len(payload)
    header = bytes([0x81]) + (
        bytes([0x80 | size])
        if size < 126
        else bytes([0x80 | 126]) + size.to_bytes(2, "big")
        if size < 65536
        else bytes([0x80 | 127]) + size.to_bytes(8, "big")
    )
    key = (mask * (size // 4 + 1))[:size]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return header + mask + body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=60_000)
    parser.add_argument("--piece", type=int, default=1)
    args = parser.parse_args()
    frame = masked_text_frame(b"x" * args.size)
    reader = FrameReader(64 * 1024)
    started = time.process_time()
    messages = []
    for i in range(0, len(frame), args.piece):
        messages += reader.feed(frame[i : i + args.piece])
    spent = time.process_time() - started
    assert messages == [(0x1, b"x" * args.size)]
    print(f"{args.size}-byte frame in {args.piece}-byte reads: {spent:.3f} CPU-s")


if __name__ == "__main__":
    main()
