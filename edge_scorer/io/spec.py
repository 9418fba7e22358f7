"""Montage + render specs: the versioned files that define a model's input.

A spec file (TOML, shipped in ``edge_scorer/specs``) names the model's input rows (channel
type, label aliases/regex, unit, minimum input rate), the model rate ``sfreq``, the epoch
length, and how each row is drawn (band height, amplitude range, filter band). The same spec
drives file reading, live stream mapping, conditioning and rendering, for training and for
live scoring alike.

:attr:`RenderSpec.hash` covers everything that changes the rendered image; models carry it,
and the engine refuses a model whose hash differs from the spec it renders with.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

SPEC_DIR = "specs"
#: Settings of the conditioning chain and renderer that change the images without being spec
#: fields; they are part of the render hash (bump ``renderer`` when the drawing changes).
CHAIN_SETTINGS: dict = {
    "antialias_fraction": 0.8, "antialias_order": 8, "highpass_order": 2, "lowpass_order": 4,
    "notch_q": 30.0, "resampler": "linear-exact-grid", "renderer": "minmax-column-join-v1",
}
_ROW_KEYS = {"name", "type", "aliases", "regex", "unit", "height", "range", "highpass",
             "lowpass", "notch", "min_sfreq"}


class SpecError(ValueError):
    """A spec file is malformed or inconsistent."""


@dataclass(frozen=True)
class RowSpec:
    """One input row of the model: a channel band of the PSG screen.

    Attributes
    ----------
    name : str
        Row name (canonical label, also the preferred input label).
    type : str
        Channel type: ``EEG``, ``EOG``, ``EMG``, ``EMG_ENVELOPE``, ``ECG``, ``RESP``, ``SPO2``.
    aliases : tuple of str
        Input labels accepted for this row (matched case-insensitively).
    regex : str or None
        Fallback pattern for input labels.
    unit : str
        Physical unit the row is drawn in (``uV``, ``%``, ``a.u.``).
    height : int
        Band height in pixels.
    range : (float, float)
        Amplitude mapped onto the band (bottom, top), in ``unit``; traces are clipped to it.
    highpass, lowpass, notch : float or None
        Filter corners in Hz (Butterworth high/low-pass, IIR notch), applied at the model rate.
    min_sfreq : float
        Lowest input sampling rate accepted for the row.
    """

    name: str
    type: str
    aliases: tuple[str, ...]
    regex: str | None
    unit: str
    height: int
    range: tuple[float, float]
    highpass: float | None = None
    lowpass: float | None = None
    notch: float | None = None
    min_sfreq: float = 1.0

    def render_key(self) -> dict:
        """Fields that change the rendered image (input for the render hash)."""
        return {
            "name": self.name, "type": self.type, "unit": self.unit, "height": self.height,
            "range": list(self.range), "highpass": self.highpass, "lowpass": self.lowpass,
            "notch": self.notch,
        }

    def matches(self, label: str) -> bool:
        """Whether an input channel label is accepted for this row."""
        norm = label.strip().casefold()
        if any(norm == a.casefold() for a in self.aliases):
            return True
        return bool(self.regex and re.search(self.regex, label.strip()))


@dataclass(frozen=True)
class RenderSpec:
    """A montage + render spec loaded from a spec file (see module docstring).

    Attributes
    ----------
    name : str
        Spec name (``sleep-edf``, ``shhs``, or a user file's name).
    version : int
        Spec file version.
    sfreq : float
        Model rate in Hz: every row is resampled to it.
    epoch_s : float
        Epoch length in seconds.
    image_height, image_width : int
        Rendered image size in pixels; row heights sum to ``image_height``.
    grayscale : bool
        Single-channel uint8 images (else 3 identical channels).
    rows : tuple of RowSpec
        Rows, top to bottom.
    """

    name: str
    version: int
    sfreq: float
    epoch_s: float
    image_height: int
    image_width: int
    grayscale: bool
    rows: tuple[RowSpec, ...]

    @property
    def epoch_samples(self) -> int:
        """Samples per epoch at the model rate (``epoch_s * sfreq``)."""
        return int(round(self.epoch_s * self.sfreq))

    @property
    def row_names(self) -> tuple[str, ...]:
        """Row names, top to bottom (the model's montage)."""
        return tuple(r.name for r in self.rows)

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one rendered image: (H, W) when grayscale, else (H, W, 3)."""
        hw = (self.image_height, self.image_width)
        return hw if self.grayscale else (*hw, 3)

    @cached_property
    def row_offsets(self) -> tuple[int, ...]:
        """Top pixel of each row band."""
        out, y = [], 0
        for r in self.rows:
            out.append(y)
            y += r.height
        return tuple(out)

    def render_dict(self) -> dict:
        """Canonical description of everything that changes the rendered images."""
        return {
            "sfreq": self.sfreq, "epoch_s": self.epoch_s, "image_height": self.image_height,
            "image_width": self.image_width, "grayscale": self.grayscale,
            "rows": [r.render_key() for r in self.rows], "chain": CHAIN_SETTINGS,
        }

    @cached_property
    def hash(self) -> str:
        """Stable 16-hex-digit hash of :meth:`render_dict` (models carry it)."""
        text = json.dumps(self.render_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> RenderSpec:
        """Build and validate a spec from parsed TOML."""
        try:
            rows = []
            for i, r in enumerate(data["rows"]):
                unknown = set(r) - _ROW_KEYS
                if unknown:
                    raise SpecError(f"{source}: row {i} has unknown keys {sorted(unknown)}")
                lo, hi = (float(v) for v in r["range"])
                rows.append(RowSpec(
                    name=str(r["name"]), type=str(r["type"]).upper(),
                    aliases=tuple(r.get("aliases", [r["name"]])), regex=r.get("regex"),
                    unit=str(r.get("unit", "uV")), height=int(r["height"]), range=(lo, hi),
                    highpass=r.get("highpass"), lowpass=r.get("lowpass"), notch=r.get("notch"),
                    min_sfreq=float(r.get("min_sfreq", 1.0)),
                ))
            spec = cls(
                name=str(data["name"]), version=int(data.get("version", 1)),
                sfreq=float(data["sfreq"]), epoch_s=float(data.get("epoch_s", 30.0)),
                image_height=int(data.get("image_height", 224)),
                image_width=int(data.get("image_width", 224)),
                grayscale=bool(data.get("grayscale", True)), rows=tuple(rows),
            )
        except KeyError as exc:
            raise SpecError(f"{source}: missing required key {exc}") from None
        spec._validate(source)
        return spec

    def _validate(self, source: str) -> None:
        if not self.rows:
            raise SpecError(f"{source}: a spec needs at least one row")
        if sum(r.height for r in self.rows) != self.image_height:
            raise SpecError(
                f"{source}: row heights sum to {sum(r.height for r in self.rows)}, "
                f"image_height is {self.image_height}"
            )
        if len(set(self.row_names)) != len(self.rows):
            raise SpecError(f"{source}: duplicate row names")
        if abs(self.epoch_s * self.sfreq - self.epoch_samples) > 1e-9:
            raise SpecError(f"{source}: epoch_s * sfreq must be an integer number of samples")
        nyq = self.sfreq / 2
        for r in self.rows:
            if r.range[1] <= r.range[0]:
                raise SpecError(f"{source}: row {r.name!r} range must be increasing")
            for corner in ("highpass", "lowpass"):
                f = getattr(r, corner)
                if f is not None and not 0 < f < nyq:
                    raise SpecError(
                        f"{source}: row {r.name!r} {corner}={f} Hz must lie in (0, {nyq}) Hz "
                        f"(half the model rate {self.sfreq} Hz)"
                    )


def available_specs() -> list[str]:
    """Names of the spec files shipped with the package."""
    files = resources.files("edge_scorer").joinpath(SPEC_DIR).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".toml"))


def load_spec(name_or_path: str | Path = "sleep-edf") -> RenderSpec:
    """Load a shipped spec by name (``"sleep-edf"``, ``"shhs"``) or a spec file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text, source = path.read_text(), str(path)
    else:
        res = resources.files("edge_scorer").joinpath(SPEC_DIR).joinpath(f"{name_or_path}.toml")
        if not res.is_file():
            raise SpecError(
                f"unknown spec {str(name_or_path)!r}: shipped specs are {available_specs()}, "
                "or give the path of a .toml spec file"
            )
        text, source = res.read_text(), f"spec {name_or_path!r}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML ({exc})") from None
    return RenderSpec.from_dict(data, source)
