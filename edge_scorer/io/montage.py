"""Map the channels of a file or stream onto the rows of a spec (the model's montage).

The same mapping serves EDF files and live LSL streams: rows are matched by exact alias
(case-insensitive), then by the row's regex; ``ROW=LABEL`` overrides win over both. A row that
cannot be mapped is an error that lists every channel the source has and the override to use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from edge_scorer.io.spec import RenderSpec


class ChannelMapError(ValueError):
    """The source's channels cannot be mapped onto the spec's rows."""


def parse_channel_overrides(items: Iterable[str] | None) -> dict[str, str]:
    """Parse ``["ROW=LABEL", ...]`` (the ``--channel`` CLI option) into a dict.

    Raises
    ------
    ValueError
        For an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in items or ():
        row, sep, label = item.partition("=")
        if not sep or not row.strip() or not label.strip():
            raise ValueError(
                f"bad channel override {item!r}: write it as ROW=LABEL, e.g. "
                "--channel 'EEG Fpz-Cz=EEG C4-A1'"
            )
        out[row.strip()] = label.strip()
    return out


def _fmt(labels: Sequence[str]) -> str:
    return ", ".join(repr(lb) for lb in labels) if labels else "(no channels)"


def map_channels(
    available: Sequence[str],
    spec: RenderSpec,
    overrides: Mapping[str, str] | None = None,
    *,
    source: str = "the input",
) -> list[int]:
    """Return, for each spec row (top to bottom), the index of its channel in ``available``.

    Parameters
    ----------
    available : sequence of str
        Channel labels of the file or stream, in their order.
    spec : RenderSpec
        The spec whose rows are needed.
    overrides : mapping, optional
        ``{row name: channel label}``; wins over aliases and regexes.
    source : str
        How to name the input in error messages (file name or stream name).

    Raises
    ------
    ChannelMapError
        When an override names an unknown row or channel, a row has no channel, or a row's
        regex matches several channels and no alias decides.
    """
    overrides = dict(overrides or {})
    unknown_rows = [r for r in overrides if r not in spec.row_names]
    if unknown_rows:
        raise ChannelMapError(
            f"channel override for unknown row(s) {_fmt(unknown_rows)}; spec {spec.name!r} has "
            f"rows {_fmt(spec.row_names)}"
        )
    folded = [lb.strip().casefold() for lb in available]
    used: set[int] = set()
    picks: dict[str, int] = {}
    # Overrides first, then exact aliases for every row, then regexes: an exact alias of a later
    # row must not be stolen by an earlier row's looser regex.
    for row in spec.rows:
        if row.name in overrides:
            want = overrides[row.name].strip().casefold()
            if want not in folded:
                raise ChannelMapError(
                    f"--channel {row.name}={overrides[row.name]}: {source} has no channel "
                    f"{overrides[row.name]!r}; it has {_fmt(available)}"
                )
            picks[row.name] = folded.index(want)
            used.add(picks[row.name])
    for row in spec.rows:
        if row.name in picks:
            continue
        for alias in row.aliases:
            idx = next((i for i, f in enumerate(folded) if f == alias.casefold()
                        and i not in used), None)
            if idx is not None:
                picks[row.name] = idx
                used.add(idx)
                break
    for row in spec.rows:
        if row.name in picks or not row.regex:
            continue
        cands = [i for i, lb in enumerate(available) if i not in used and row.matches(lb)]
        if len(cands) > 1:
            raise ChannelMapError(
                f"row {row.name!r} of spec {spec.name!r} matches several channels of {source}: "
                f"{_fmt([available[i] for i in cands])}; choose one with "
                f"--channel '{row.name}=<label>'"
            )
        if cands:
            picks[row.name] = cands[0]
            used.add(cands[0])
    missing = [r for r in spec.rows if r.name not in picks]
    if missing:
        hints = " ".join(f"--channel '{r.name}=<label>'" for r in missing)
        wanted = "; ".join(f"{r.name!r} ({r.type}, e.g. {_fmt(r.aliases[:3])})" for r in missing)
        raise ChannelMapError(
            f"{source} lacks channel(s) for row(s) {wanted} of spec {spec.name!r}. "
            f"It has: {_fmt(available)}. Map them with {hints}, or use a spec (and a model) "
            "made for this montage."
        )
    return [picks[r.name] for r in spec.rows]
