"""Text genotypes: fixed-length UTF-8 byte buffers.

A text lives in an archive like any other genotype: a ``(L,)`` uint8 array holding its
UTF-8 bytes, zero-padded. Checkpoints, exports and sharding then need nothing special.
A text whose encoding is longer than ``L`` bytes does not fit (:func:`fits`); texts
cannot contain NUL characters (they would read as the end of the text).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def encoded_length(text: str) -> int:
    return len(text.encode("utf-8"))


def fits(text: str, length: int) -> bool:
    """Whether ``text`` can be stored in a buffer of ``length`` bytes."""
    return "\x00" not in text and encoded_length(text) <= length


def encode(texts: Sequence[str], length: int) -> np.ndarray:
    """``(B, length)`` uint8 buffers; raises ``ValueError`` for a text that does not fit."""
    out = np.zeros((len(texts), int(length)), np.uint8)
    for i, text in enumerate(texts):
        if not fits(text, length):
            raise ValueError(
                f"text {i} does not fit in {length} bytes ({encoded_length(text)} bytes"
                f"{', contains NUL' if chr(0) in text else ''}): {text[:60]!r}"
            )
        data = text.encode("utf-8")
        out[i, : len(data)] = np.frombuffer(data, np.uint8)
    return out


def decode(genotypes) -> list[str]:
    """The texts of a ``(B, L)`` (or ``(L,)``) byte batch; an all-zero row is ``""``."""
    array = np.asarray(genotypes, np.uint8)
    rows = array[None] if array.ndim == 1 else array
    texts = []
    for row in rows:
        data = row.tobytes().split(b"\x00", 1)[0]
        texts.append(data.decode("utf-8", errors="replace"))
    return texts


def article(word: str) -> str:
    """``a`` or ``an`` before ``word`` (by its first letter; good enough for prompts)."""
    return "an" if word[:1].lower() in "aeiou" else "a"
