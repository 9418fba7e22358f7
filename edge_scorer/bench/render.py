"""Benchmark of the conditioning chain and the renderer against straightforward baselines.

``python -m edge_scorer.bench render [--spec sleep-edf] [--epochs 960] [--repeats 5]
[--source synthetic|simulated]``

Times, on a synthetic night (1/f noise + alpha, spindles, slow waves, eye movements, EMG
envelope) or a night of the simulator (``--source simulated``, rows at their native rates):

- conditioning of the whole night in one call (offline/training path) and chunk by chunk
  (live path, 1-s chunks), against a straightforward offline pipeline
  (``mne.filter.filter_data`` FIR band-pass + ``mne.filter.notch_filter`` per row);
- ``render_epoch`` per epoch and ``render_epochs`` (batched) per epoch, against a per-column
  Python loop of the same algorithm (its pixels are checked identical) and a matplotlib Agg
  line plot of the epoch at the image size.

Prints a table: median and p99 per call, the baseline side by side, and the speed-up ratio.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable, Sequence

import numpy as np

from edge_scorer.dsp.conditioning import Conditioner, condition, epochs_from_signal
from edge_scorer.dsp.render import render_epoch, render_epochs
from edge_scorer.io.spec import RenderSpec, load_spec


def synthetic_night(spec: RenderSpec, n_epochs: int, seed: int = 0) -> np.ndarray:
    """A realistic-looking night at ``spec.sfreq`` in row units (n_rows, n_epochs * epoch)."""
    rng = np.random.default_rng(seed)
    fs = spec.sfreq
    n = n_epochs * spec.epoch_samples
    t = np.arange(n) / fs
    freqs = np.fft.rfftfreq(n, 1 / fs)
    shape = 1.0 / np.maximum(freqs, 0.1)  # 1/f amplitude -> 1/f^2 power (brown-ish EEG)
    # slow stage-like modulation of wave content over the night
    depth = 0.5 + 0.5 * np.sin(2 * np.pi * t / 5400.0)
    rows = []
    for row in spec.rows:
        white = rng.standard_normal(freqs.size) + 1j * rng.standard_normal(freqs.size)
        noise = np.fft.irfft(shape * white, n)
        noise *= 8.0 / noise.std()
        lo, hi = row.range
        half = (hi - lo) / 2
        if row.type == "EEG":
            x = (noise + 10 * (1 - depth) * np.sin(2 * np.pi * 10 * t)            # alpha
                 + 40 * depth * np.sin(2 * np.pi * 0.8 * t + rng.uniform(0, 6))    # slow waves
                 + 8 * np.sin(2 * np.pi * 13 * t) * (np.sin(2 * np.pi * t / 7) > 0.9))  # spindles
        elif row.type == "EOG":
            x = noise + 0.6 * half * np.tanh(3 * np.sin(2 * np.pi * 0.3 * t)) * (1 - depth)
        elif row.type == "EMG_ENVELOPE":
            x = lo + 0.25 * (hi - lo) * (1.2 - depth) + 0.05 * np.abs(noise)
        elif row.type == "SPO2":
            x = 95 + 2 * np.sin(2 * np.pi * t / 60) + 0.1 * noise
        elif row.type == "RESP":
            x = 0.8 * np.sin(2 * np.pi * 0.25 * t) + 0.02 * noise
        else:  # EMG, ECG: broadband noise with power-line hum
            x = rng.standard_normal(n) * half / 3 + 5 * np.sin(2 * np.pi * 60 * t)
        rows.append(x + 3.0 * np.sin(2 * np.pi * 60 * t) if row.type == "EEG" else x)
    return np.vstack(rows)


def simulated_night(spec: RenderSpec, n_epochs: int,
                    seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """Rows of a simulated night (:mod:`edge_scorer.simulate`) at their native rates."""
    from edge_scorer.io.montage import map_channels
    from edge_scorer.simulate import LAYOUTS, simulate_night

    if spec.name not in LAYOUTS:
        raise ValueError(f"the simulator has no {spec.name!r} layout (it has "
                         f"{', '.join(LAYOUTS)}); use --source synthetic")
    night = simulate_night(layout=spec.name, seed=seed, duration_h=n_epochs * spec.epoch_s / 3600)
    chans = [night.channels[i] for i in map_channels(night.labels, spec, source="simulated")]
    return [np.asarray(c.data, dtype=np.float64) for c in chans], [float(c.sfreq) for c in chans]


def _at_model_rate(rows: list[np.ndarray], rates: list[float], spec: RenderSpec) -> np.ndarray:
    """Rows brought to the model rate by plain linear interpolation (equal-rate input)."""
    n = min(int(r.size * spec.sfreq / fs) for r, fs in zip(rows, rates, strict=True))
    t = np.arange(n) / spec.sfreq
    return np.vstack([r if fs == spec.sfreq else np.interp(t, np.arange(r.size) / fs, r)
                      for r, fs in zip(rows, rates, strict=True)])[:, :n]


def _baseline_condition(x: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """Straightforward offline conditioning: MNE FIR filters per row (zero-phase, whole night)."""
    import mne

    out = np.empty_like(x)
    for i, row in enumerate(spec.rows):
        y = x[i]
        if row.highpass is not None or row.lowpass is not None:
            y = mne.filter.filter_data(y, spec.sfreq, row.highpass, row.lowpass, verbose="error")
        if row.notch is not None and row.notch < spec.sfreq / 2:
            y = mne.filter.notch_filter(y, spec.sfreq, row.notch, verbose="error")
        out[i] = y
    return out


def baseline_render_loop(epoch: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """The renderer's algorithm as a per-column Python loop (pixel-identical reference)."""
    h, w, e = spec.image_height, spec.image_width, spec.epoch_samples
    img = np.zeros((h, w), dtype=np.uint8)
    starts = [-((-c * e) // w) for c in range(w)] + [e]
    for r, (row, top) in enumerate(zip(spec.rows, spec.row_offsets, strict=True)):
        lo, hi = row.range
        bottom = top + row.height - 1
        scale = (bottom - top) / (hi - lo)
        x = epoch[r]
        for c in range(w):
            seg = x[starts[c]:starts[c + 1]]
            seg = seg[np.isfinite(seg)]
            if seg.size == 0:
                continue
            vmax, vmin = float(seg.max()), float(seg.min())
            if c > 0 and np.isfinite(x[starts[c] - 1]):
                vmax, vmin = max(vmax, x[starts[c] - 1]), min(vmin, x[starts[c] - 1])
            ys = []
            for v in (vmax, vmin):
                px = min(max(bottom - (v - lo) * scale, top), bottom)
                ys.append(int(np.floor(px + 0.5)))
            img[ys[0]:ys[1] + 1, c] = 255
    if not spec.grayscale:
        img = np.repeat(img[..., None], 3, axis=-1)
    return img


def _matplotlib_renderer(spec: RenderSpec) -> Callable[[np.ndarray], np.ndarray] | None:
    """A matplotlib Agg line plot of the epoch at the image size (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    h, w = spec.image_height, spec.image_width
    t = np.arange(spec.epoch_samples)

    def draw(epoch: np.ndarray) -> np.ndarray:
        fig = Figure(figsize=(w / 100, h / 100), dpi=100, facecolor="black")
        canvas = FigureCanvasAgg(fig)
        for row, top, x in zip(spec.rows, spec.row_offsets, epoch, strict=True):
            ax = fig.add_axes((0, 1 - (top + row.height) / h, 1, row.height / h))
            ax.set_facecolor("black")
            ax.plot(t, np.clip(x, *row.range), color="white", linewidth=0.5)
            ax.set_xlim(0, t[-1])
            ax.set_ylim(*row.range)
            ax.set_axis_off()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., 0].copy()

    return draw


def time_each(fn: Callable[[], object], n: int) -> np.ndarray:
    """Wall-clock seconds of ``n`` calls of ``fn``, one per call."""
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out


def _stats_ms(samples_s: np.ndarray) -> tuple[float, float]:
    return float(np.median(samples_s) * 1e3), float(np.percentile(samples_s, 99) * 1e3)


#: One table row: operation, median ms, p99 ms, baseline name, baseline median ms (or None).
_Row = tuple[str, float, float, str, float | None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table (see the module docstring)."""
    args = _parse_args(argv)
    spec = load_spec(args.spec)
    rows: list[_Row] = []
    night = _bench_night(spec, args.source, args.epochs, args.repeats, rows)
    n_ep = night.shape[1] // spec.epoch_samples
    night_h = n_ep * spec.epoch_s / 3600
    rows += _conditioning_rows(night, spec, args.repeats)
    epochs = epochs_from_signal(condition(night, spec.sfreq, spec), spec)
    n_base = min(args.baseline_epochs, n_ep)
    render_rows, same = _render_rows(epochs, spec, args.repeats, n_ep, n_base)
    rows += render_rows
    print(f"edge-scorer render benchmark: spec {spec.name!r} ({spec.n_rows} rows, "
          f"{spec.sfreq:g} Hz, {spec.image_height}x{spec.image_width}), {n_ep} epochs "
          f"({night_h:.1f} h, {args.source}), {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}")
    _print_table(rows)
    print(f"render_epoch pixels identical to the Python-loop baseline on {n_base} epochs: "
          f"{'yes' if same else 'NO'}")
    return 0 if same else 1


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench render",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="sleep-edf", help="spec name or .toml path")
    parser.add_argument("--epochs", type=int, default=960, help="epochs in the synthetic night")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of whole-night timings")
    parser.add_argument("--baseline-epochs", type=int, default=60,
                        help="epochs timed for the slow baselines")
    parser.add_argument("--source", choices=("synthetic", "simulated"), default="synthetic",
                        help="synthetic 1/f night (default) or the simulator's night")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2")
    return args


def _bench_night(
    spec: RenderSpec, source: str, n_epochs: int, repeats: int, rows: list[_Row]
) -> np.ndarray:
    """The night at the model rate; a simulated night at mixed native rates also times (into
    ``rows``) conditioning from those rates."""
    if source != "simulated":
        return synthetic_night(spec, n_epochs)
    native, rates = simulated_night(spec, n_epochs)
    night = _at_model_rate(native, rates, spec)
    if set(rates) != {spec.sfreq}:
        mixed_s = time_each(lambda: condition(native, rates, spec), repeats)
        rows.append(("condition, native rates " + "/".join(f"{r:g}" for r in sorted(
            set(rates), reverse=True)) + " Hz", *_stats_ms(mixed_s), "", None))
    return night


def _conditioning_rows(night: np.ndarray, spec: RenderSpec, repeats: int) -> list[_Row]:
    """Conditioning timings: whole night (vs MNE FIR), live 1-s chunks, from 256 Hz."""
    rows: list[_Row] = []
    n_ep = night.shape[1] // spec.epoch_samples
    night_h = n_ep * spec.epoch_s / 3600
    # conditioning: whole night, offline
    cond_s = time_each(lambda: condition(night, spec.sfreq, spec), repeats)
    base_s = time_each(lambda: _baseline_condition(night, spec), max(1, repeats // 2))
    rows.append((f"condition, whole night ({night_h:.1f} h)", *_stats_ms(cond_s),
                 "MNE FIR filter_data+notch", float(np.median(base_s) * 1e3)))
    rows.append(("condition, per epoch (night / n)", float(np.median(cond_s) / n_ep * 1e3),
                 float(np.percentile(cond_s, 99) / n_ep * 1e3), "MNE FIR, per epoch",
                 float(np.median(base_s) / n_ep * 1e3)))
    # conditioning: live, 1-s chunks
    step = int(spec.sfreq)
    live = Conditioner(spec, spec.sfreq)
    chunk_s = np.empty(night.shape[1] // step)
    for i in range(chunk_s.size):
        t0 = time.perf_counter()
        live.process(night[:, i * step:(i + 1) * step])
        chunk_s[i] = time.perf_counter() - t0
    rows.append(("condition, live 1-s chunk", *_stats_ms(chunk_s), "", None))
    # downsampling path (e.g. a 256-Hz recorder)
    hi_rate = 256.0
    if all(hi_rate >= r.min_sfreq for r in spec.rows):
        up = np.vstack([np.interp(np.arange(int(night.shape[1] * hi_rate / spec.sfreq))
                                  * spec.sfreq / hi_rate, np.arange(night.shape[1]), r)
                        for r in night])
        down_s = time_each(lambda: condition(up, hi_rate, spec), max(1, repeats // 2))
        rows.append((f"condition, whole night from {hi_rate:g} Hz", *_stats_ms(down_s), "", None))
    return rows


def _render_rows(
    epochs: np.ndarray, spec: RenderSpec, repeats: int, n_ep: int, n_base: int
) -> tuple[list[_Row], bool]:
    """Render timings (per epoch, batched) against the Python loop and matplotlib, and
    whether the pixels equal the loop's on the first ``n_base`` epochs."""
    rows: list[_Row] = []
    # render: one epoch per call
    one_s = np.concatenate([time_each(lambda e=e: render_epoch(e, spec), 1) for e in epochs])
    loop_s = np.concatenate([time_each(lambda e=e: baseline_render_loop(e, spec), 1)
                             for e in epochs[:n_base]])
    same = all(np.array_equal(render_epoch(e, spec), baseline_render_loop(e, spec))
               for e in epochs[:n_base])
    rows.append(("render_epoch", *_stats_ms(one_s), "per-column Python loop",
                 float(np.median(loop_s) * 1e3)))
    mpl = _matplotlib_renderer(spec)
    if mpl is not None:
        mpl_s = np.concatenate([time_each(lambda e=e: mpl(e), 1) for e in epochs[:n_base]])
        rows.append(("render_epoch", *_stats_ms(one_s), "matplotlib Agg line plot",
                     float(np.median(mpl_s) * 1e3)))
    batch_s = time_each(lambda: render_epochs(epochs, spec), repeats) / n_ep
    rows.append((f"render_epochs (batch of {n_ep}), per epoch", *_stats_ms(batch_s),
                 "per-column Python loop", float(np.median(loop_s) * 1e3)))
    return rows, same


def _print_table(rows: Sequence[_Row]) -> None:
    """Print the timing rows with their baselines and speed-up ratios."""
    head = f"{'operation':44s} {'median ms':>10s} {'p99 ms':>9s}   {'baseline':28s} " \
           f"{'median ms':>10s} {'ratio':>8s}"
    print(head)
    print("-" * len(head))
    for name, med, p99, bname, bmed in rows:
        base = f"{bname:28s} {bmed:10.3f} {bmed / med:7.1f}x" if bmed is not None else ""
        print(f"{name:44s} {med:10.3f} {p99:9.3f}   {base}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
