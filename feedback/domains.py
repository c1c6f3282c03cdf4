"""Text domains for QDAIF: what is written, how its quality is asked, and the axes of
diversity, each between two named poles.

Built-in domains: ``opinions`` (one sentiment axis) and ``stories`` (genre and ending
axes). A user-defined domain is a TOML file::

    name = "slogans"
    item = "product slogan"                 # what one text is
    topic = "a reusable water bottle"
    quality = "Is this a good, catchy product slogan for a reusable water bottle?"
    seeds = ["Drink more, waste less.", "Your water, everywhere."]
    bins = 20                               # cells per axis (optional, default 20)
    nonuniform = true                       # cells finer near the poles (optional)
    max_bytes = 512                         # longest text kept, in UTF-8 bytes (optional)
    max_tokens = 120                        # generation length (optional)

    [[axes]]
    name = "tone"
    low = "serious"                         # the pole rated 0
    high = "playful"                        # the pole rated 1

:func:`load` validates a domain and says exactly what is wrong with a malformed one.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from typing import Any

import numpy as np

from qdkit import text as text_codec


@dataclasses.dataclass(frozen=True)
class Axis:
    """A diversity axis rated between two poles (``low`` = 0, ``high`` = 1)."""

    name: str
    low: str
    high: str


@dataclasses.dataclass(frozen=True)
class Domain:
    """A QDAIF text domain (see the module docstring for the fields)."""

    name: str
    item: str
    topic: str
    quality: str
    axes: tuple[Axis, ...]
    seeds: tuple[str, ...]
    bins: int = 20
    nonuniform: bool = True
    max_bytes: int = 512
    max_tokens: int = 120

    def edges(self) -> tuple[tuple[float, ...], ...] | None:
        """Cell boundaries per axis when ``nonuniform`` (else ``None``: uniform cells)."""
        if not self.nonuniform:
            return None
        return tuple(tuple(float(v) for v in nonuniform_edges(self.bins)) for _ in self.axes)


def nonuniform_edges(bins: int) -> np.ndarray:
    """``bins + 1`` boundaries on [0, 1], finer near 0 and 1 than in the middle.

    Ratings from log-probabilities crowd near the poles (QDAIF); cells spaced as
    ``(1 - cos(pi u)) / 2`` for uniform ``u`` resolve them there: with 20 bins the end
    cells are 0.006 wide and the middle ones 0.078.
    """
    u = np.linspace(0.0, 1.0, int(bins) + 1)
    edges = (1.0 - np.cos(np.pi * u)) / 2.0
    edges[0], edges[-1] = 0.0, 1.0
    return edges


OPINIONS = Domain(
    name="opinions",
    item="opinion piece",
    topic="eating vegetables and plant-based foods",
    quality="Is this a good, well-written opinion piece about eating vegetables and plant-based foods?",
    axes=(Axis("sentiment", "negative", "positive"),),
    seeds=(
        "Plant-based meals leave me full of energy, and I never miss meat when the vegetables are cooked well.",
        "I tried to eat more vegetables for a month and found most of them bland, expensive and tiring to cook.",
        "Vegetables are fine as a side dish, but I do not see why every meal has to be built around them.",
        "Eating more beans, lentils and greens is the simplest change anyone can make for their health.",
    ),
    bins=20,
)

STORIES = Domain(
    name="stories",
    item="short story",
    topic="a suspicious spy and a rich politician",
    quality="Is this a good short story about a suspicious spy and a rich politician?",
    axes=(Axis("genre", "horror", "romance"), Axis("ending", "tragic", "happy")),
    seeds=(
        "The spy watched the politician's mansion for a week. On the last night the lights went out, and the "
        "screams began.",
        "She was sent to steal his secrets, and he was sent to win her vote. By spring they had given up both "
        "and married in secret.",
        "The politician paid the spy to follow his rival. The spy followed the money instead, and it led back "
        "to the man who hired him.",
    ),
    bins=10,
    max_tokens=160,
    max_bytes=768,
)

BUILTIN = {d.name: d for d in (OPINIONS, STORIES)}

_REQUIRED = ("name", "item", "topic", "quality", "axes", "seeds")
_OPTIONAL = {"bins": 20, "nonuniform": True, "max_bytes": 512, "max_tokens": 120}


class DomainError(ValueError):
    """A malformed domain (the message says what and where)."""


def names() -> list[str]:
    return sorted(BUILTIN)


def get(name_or_path: str | Domain) -> Domain:
    """A built-in domain by name, or one loaded from a TOML file path."""
    if isinstance(name_or_path, Domain):
        return name_or_path
    if name_or_path in BUILTIN:
        return BUILTIN[name_or_path]
    if str(name_or_path).endswith(".toml") or os.path.exists(str(name_or_path)):
        return load(str(name_or_path))
    raise KeyError(
        f"unknown domain {name_or_path!r}; valid domains: {', '.join(names())}, or the path of a .toml domain file"
    )


def load(path: str) -> Domain:
    """Read and validate a domain TOML file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise DomainError(f"cannot read domain file {path}: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise DomainError(f"{path} is not valid TOML: {e}") from e
    return from_dict(data, source=path)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DomainError(f"{where} must be a non-empty string; got {value!r}")
    return value.strip()


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DomainError(f"{where} must be an integer from {low} to {high}; got {value!r}")
    return value


def from_dict(data: dict[str, Any], *, source: str = "domain") -> Domain:
    """Validate a domain given as a dict (the TOML file's content)."""
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise DomainError(
            f"{source}: unknown key {', '.join(map(repr, unknown))}; valid keys: "
            f"{', '.join(_REQUIRED + tuple(_OPTIONAL))}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise DomainError(f"{source}: missing key {', '.join(map(repr, missing))}")
    fields = {k: _string(data[k], f"{source}: {k}") for k in ("name", "item", "topic", "quality")}
    opts = {**_OPTIONAL, **{k: data[k] for k in _OPTIONAL if k in data}}
    bins = _integer(opts["bins"], f"{source}: bins", 2, 200)
    max_bytes = _integer(opts["max_bytes"], f"{source}: max_bytes", 16, 16384)
    max_tokens = _integer(opts["max_tokens"], f"{source}: max_tokens", 4, 4096)
    if not isinstance(opts["nonuniform"], bool):
        raise DomainError(f"{source}: nonuniform must be true or false; got {opts['nonuniform']!r}")

    axes_data = data["axes"]
    if not isinstance(axes_data, list) or not 1 <= len(axes_data) <= 3:
        raise DomainError(f"{source}: axes must be a list of 1 to 3 tables ([[axes]]); got {axes_data!r}")
    axes = []
    for i, axis in enumerate(axes_data):
        where = f"{source}: axes[{i}]"
        if not isinstance(axis, dict):
            raise DomainError(f"{where} must be a table with name, low and high")
        extra = sorted(set(axis) - {"name", "low", "high"})
        if extra:
            raise DomainError(f"{where}: unknown key {', '.join(map(repr, extra))}; valid keys: name, low, high")
        for key in ("name", "low", "high"):
            if key not in axis:
                raise DomainError(f"{where}: missing key {key!r}")
        made = Axis(*(_string(axis[k], f"{where}.{k}") for k in ("name", "low", "high")))
        if made.low.lower() == made.high.lower():
            raise DomainError(f"{where}: the poles must differ; both are {made.low!r}")
        axes.append(made)
    if len({a.name for a in axes}) != len(axes):
        raise DomainError(f"{source}: axis names must differ")

    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise DomainError(f"{source}: seeds must be a non-empty list of texts")
    clean = []
    for i, seed in enumerate(seeds):
        seed = _string(seed, f"{source}: seeds[{i}]")
        if not text_codec.fits(seed, max_bytes):
            raise DomainError(
                f"{source}: seeds[{i}] is {text_codec.encoded_length(seed)} bytes, longer than max_bytes={max_bytes}"
            )
        clean.append(seed)
    return Domain(
        **fields, axes=tuple(axes), seeds=tuple(clean), bins=bins, nonuniform=opts["nonuniform"],
        max_bytes=max_bytes, max_tokens=max_tokens,
    )  # fmt: skip
