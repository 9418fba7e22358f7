"""The conditioning chain's IIR filters without importing ``scipy.signal`` (~0.6 s in scipy 1.17).

* :func:`butter_sos`, :func:`notch_sos` and :func:`sosfilt_zi` port ``scipy.signal.butter(...,
  output="sos", fs=...)``, ``tf2sos(*iirnotch(...))`` and ``sosfilt_zi`` to numpy operation by
  operation (prototype, pre-warp, lp2lp/lp2hp, bilinear, ``zpk2sos`` "nearest" pairing), so they
  are bit-identical to scipy's (``tests/test_iir.py``: every shipped spec, anti-alias, orders 1-8).
* :func:`sosfilt` calls scipy's compiled kernel ``scipy/signal/_sosfilt*.so`` as
  ``scipy.signal.sosfilt`` does: bit-identical and as fast. The extension is loaded from its file
  with :mod:`importlib`, which does not run ``scipy/signal/__init__.py`` (~0.01 s). It is a
  private scipy API, so it is guarded: loaded lazily, once; if the file is missing, the load
  fails, or a self-check (64 samples through 2 sections against a plain-Python
  direct-form-II-transposed loop, to 1e-12) fails or raises, one INFO line is logged and
  :func:`sosfilt` falls back to ``scipy.signal.sosfilt`` (slow import, same numbers). Set
  :data:`USE_COMPILED_KERNEL` to False to force the fallback.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import math
import os
from collections.abc import Callable

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("iir")

#: Use scipy's compiled ``_sosfilt`` kernel (False: always ``scipy.signal.sosfilt``).
USE_COMPILED_KERNEL = True
_kernel: list[Callable | None] = []  # [kernel or None] once resolved


def _cplxreal(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``scipy.signal._filter_design._cplxreal``: (one of each conjugate pair, reals)."""
    z = np.atleast_1d(z)
    if z.size == 0:
        return z, z
    tol = 100 * np.finfo((1.0 * z).dtype).eps
    z = z[np.lexsort((abs(z.imag), z.real))]
    real = abs(z.imag) <= tol * abs(z)
    zr = z[real].real
    if len(zr) == len(z):
        return np.array([]), zr
    z = z[~real]
    zp, zn = z[z.imag > 0], z[z.imag < 0]
    diffs = np.diff(np.concatenate(([0], np.diff(zp.real) <= tol * abs(zp[:-1]), [0])))
    for start, stop in zip(np.nonzero(diffs > 0)[0], np.nonzero(diffs < 0)[0] + 1, strict=True):
        for chunk in (zp[start:stop], zn[start:stop]):
            chunk[...] = chunk[np.lexsort([abs(chunk.imag)])]
    return (zp + zn.conj()) / 2, zr


def _poly(roots: list) -> np.ndarray:
    """``scipy.signal._polyutils.poly`` (1-D ``numpy.poly``)."""
    roots = np.atleast_1d(np.asarray(roots))
    if roots.shape[0] == 0:
        return np.ones(1)
    a = np.ones((1,), dtype=roots.dtype)
    one = np.ones_like(roots[0])
    for root in roots:
        a = np.convolve(a, np.stack((one, -root)), mode="full")
    if np.iscomplexobj(a):
        r = np.asarray(roots, dtype=np.complex128)
        if np.all(np.sort(r.imag) == np.sort(np.conj(r).imag)):
            a = np.real(a).copy()
    return a


def _section(z: list, p: list) -> np.ndarray:
    """``scipy.signal._filter_design._single_zpksos(z, p, 1)``."""
    b, a, sos = _poly(z), _poly(p), np.zeros(6)
    sos[3 - len(b):3], sos[6 - len(a):6] = b, a
    return sos


def _nearest(fro: np.ndarray, to: complex, which: str) -> int:
    """``scipy.signal._filter_design._nearest_real_complex_idx``."""
    order = np.argsort(np.abs(fro - to))
    if which == "any":
        return int(order[0])
    return int(order[np.nonzero(np.isreal(fro[order]))[0][0]])


def _zpk2sos(z: np.ndarray, p: np.ndarray, k: float) -> np.ndarray:
    """``scipy.signal.zpk2sos(z, p, k)`` for a digital filter ("nearest" pairing)."""
    p = np.concatenate((p, np.zeros(max(len(z) - len(p), 0))))
    z = np.concatenate((z, np.zeros(max(len(p) - len(z), 0))))
    n_sections = (max(len(p), len(z)) + 1) // 2
    if len(p) % 2 == 1:
        p, z = np.concatenate((p, [0.0])), np.concatenate((z, [0.0]))
    z, p = np.concatenate(_cplxreal(z)), np.concatenate(_cplxreal(p))

    def worst(q: np.ndarray) -> int:  # closest to the unit circle
        return int(np.argmin(np.abs(1 - np.abs(q))))

    sos = np.zeros((n_sections, 6))
    for si in range(n_sections - 1, -1, -1):
        i = worst(p)
        p1, p = p[i], np.delete(p, i)
        if np.isreal(p1) and np.isreal(p).sum() == 0:  # last remaining real pole
            j = _nearest(z, p1, "real")
            sos[si] = _section([z[j], 0], [p1, 0])
            z = np.delete(z, j)
            continue
        # (scipy's special case 2 needs complex zeros and a real pole: not in these designs)
        if np.isreal(p1):
            reals = np.flatnonzero(np.isreal(p))
            j = int(reals[worst(p[reals])])
            p2, p = p[j], np.delete(p, j)
        else:
            p2 = p1.conj()
        zs: list = []
        if len(z) > 0:
            j = _nearest(z, p1, "any")
            z1, z = z[j], np.delete(z, j)
            zs = [z1, z1.conj()] if not np.isreal(z1) else [z1]
            if np.isreal(z1) and len(z) > 0:
                j = _nearest(z, p1, "real")
                zs.append(z[j])
                z = np.delete(z, j)
        sos[si] = _section(zs, [p1, p2])
    sos[0][:3] *= np.asarray(k).real
    return sos


def butter_sos(order: int, corner_hz: float, btype: str, fs: float) -> np.ndarray:
    """Digital Butterworth low-/high-pass as second-order sections.

    Bit-identical to ``scipy.signal.butter(order, corner_hz, btype, fs=fs, output="sos")``
    (the same operations in the same order).

    Parameters
    ----------
    order : int
        Filter order (>= 1).
    corner_hz : float
        -3 dB corner in Hz, ``0 < corner_hz < fs / 2``.
    btype : {"lowpass", "highpass"}
    fs : float
        Sampling rate in Hz.

    Returns
    -------
    ndarray of shape ((order + 1) // 2, 6), float64
    """
    fs = float(fs)
    wn = np.asarray(corner_hz, dtype=np.float64) / (fs / 2)
    if btype not in ("lowpass", "highpass") or int(order) != order or order < 1:
        raise ValueError(f"butter_sos: need btype lowpass/highpass and order >= 1, got "
                         f"{btype!r}, {order!r}")
    if not 0 < wn < 1:
        raise ValueError(f"corner {corner_hz} Hz must lie in (0, fs/2) with fs={fs} Hz")
    n = int(order)
    m = np.arange(-n + 1, n, 2, dtype=np.float64)
    p = -np.exp(1j * np.pi * m / (2 * n))           # analog prototype (buttap), k = 1
    wo = float(2 * 2.0 * np.tan(np.pi * wn / 2.0))  # pre-warp with fs = 2
    if btype == "lowpass":  # lp2lp_zpk (zeros at infinity)
        z, p, k = np.zeros(0), wo * p, wo ** n
    else:                   # lp2hp_zpk (zeros at the origin; k from the prototype poles)
        z, p, k = np.zeros(n), wo / p, np.real(1.0 / np.prod(-p))
    # bilinear_zpk with fs = 2 (fs2 = 4): zeros at infinity go to Nyquist (-1)
    z_z = np.concatenate(((4.0 + z) / (4.0 - z), -np.ones(len(p) - len(z))))
    k_z = k * np.real(np.prod(4.0 - z) / np.prod(4.0 - p))
    return _zpk2sos(z_z, (4.0 + p) / (4.0 - p), k_z)


def notch_sos(f0: float, q: float, fs: float) -> np.ndarray:
    """IIR notch as one second-order section.

    Bit-identical to ``scipy.signal.tf2sos(*scipy.signal.iirnotch(f0, q, fs=fs))``.

    Returns
    -------
    ndarray of shape (1, 6), float64
    """
    w0 = 2 * float(f0) / float(fs)
    if not 0.0 <= w0 <= 1.0:
        raise ValueError(f"notch {f0} Hz must lie in (0, fs/2) with fs={fs} Hz")
    bw = w0 / float(q) * math.pi
    w0 = w0 * math.pi
    gain = 1.0 / (1.0 + math.tan(bw / 2.0))
    b = gain * np.asarray([1.0, -2.0 * math.cos(w0), 1.0])
    a = np.asarray([1.0, -2.0 * gain * math.cos(w0), (2.0 * gain - 1.0)])
    b, a = b / a[0], a / a[0]                       # tf2zpk (normalize)
    k = b[0]
    return _zpk2sos(np.roots(b / b[0]), np.roots(a), k)


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """Steady-state initial conditions of a cascade for a unit step input.

    The numpy port of ``scipy.signal.sosfilt_zi`` (its ``lfilter_zi`` linear solves).

    Parameters
    ----------
    sos : ndarray of shape (n_sections, 6)

    Returns
    -------
    ndarray of shape (n_sections, 2), float64
    """
    sos = np.asarray(sos, dtype=np.float64)
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for s in range(sos.shape[0]):
        b, a = sos[s, :3], sos[s, 3:]
        if a[0] != 1.0:
            b, a = b / a[0], a / a[0]
        companion_t = np.zeros((2, 2))  # scipy.linalg.companion(a).T
        companion_t[:, 0] = -a[1:] / (1.0 * a[0:1])
        companion_t[0, 1] = 1
        zi[s] = scale * np.linalg.solve(np.eye(2) - companion_t, b[1:] - a[1:] * b[0])
        scale *= np.sum(sos[s, :3]) / np.sum(sos[s, 3:])
    return zi


def _reference_sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
    """Plain-Python direct-form-II-transposed cascade (the self-check's reference)."""
    y = [float(v) for v in x]
    for (b0, b1, b2, _, a1, a2), (z0, z1) in zip(sos.tolist(), zi.tolist(), strict=True):
        for n, v in enumerate(y):
            y[n] = out = b0 * v + z0
            z0, z1 = b1 * v - a1 * out + z1, b2 * v - a2 * out
    return np.asarray(y)


def _load_kernel() -> Callable:
    """scipy's compiled ``_sosfilt`` (self-checked), or None (see the module docstring)."""
    import scipy

    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    paths = [os.path.join(scipy.__path__[0], "signal", "_sosfilt" + s) for s in suffixes]
    path = next((p for p in paths if os.path.isfile(p)), None)
    if path is None:
        raise ImportError("no _sosfilt extension next to scipy.signal")
    spec = importlib.util.spec_from_file_location("scipy.signal._sosfilt", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kernel = module._sosfilt
    sos = np.array([[0.2, 0.4, 0.2, 1.0, -0.5, 0.25], [1.0, -1.0, 0.0, 1.0, -0.9, 0.0]])
    x = np.random.default_rng(0).standard_normal(64)
    zi = np.array([[0.1, -0.2], [0.3, 0.05]])
    xk, zk = x[None, :].copy(), zi[None].copy()
    kernel(sos, xk, zk)
    if not np.allclose(xk[0], _reference_sosfilt(sos, x, zi), rtol=1e-12, atol=1e-12):
        raise ValueError("self-check of the compiled _sosfilt failed")
    return kernel


def _get_kernel() -> Callable | None:
    if not _kernel:
        try:
            _kernel.append(_load_kernel() if USE_COMPILED_KERNEL else None)
        except Exception as exc:  # noqa: BLE001 - private scipy API: any failure -> fallback
            log.info("scipy's compiled _sosfilt kernel not usable (%s: %s); using "
                     "scipy.signal.sosfilt", type(exc).__name__, exc)
            _kernel.append(None)
    return _kernel[0]


def sosfilt(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Filter a 1-D signal through a cascade, carrying the state.

    Bit-identical to ``scipy.signal.sosfilt(sos, x, zi=zi)``; ``x`` and ``zi`` are not
    modified.

    Parameters
    ----------
    sos : ndarray of shape (n_sections, 6)
    x : ndarray of shape (n,), float64
    zi : ndarray of shape (n_sections, 2)
        State before ``x``.

    Returns
    -------
    y : ndarray of shape (n,), float64
    zf : ndarray of shape (n_sections, 2)
        State after ``x``.
    """
    kernel = _get_kernel() if USE_COMPILED_KERNEL else None
    sos = np.ascontiguousarray(sos, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if kernel is None or x.ndim != 1:
        from scipy import signal

        return signal.sosfilt(sos, x, zi=zi)
    zi = np.asarray(zi, dtype=np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6 or not np.all(sos[:, 3] == 1) \
            or zi.shape != (sos.shape[0], 2):
        raise ValueError(f"need sos (n, 6) with sos[:, 3] == 1 and zi (n, 2), got {sos.shape}"
                         f" and {zi.shape}")
    y = np.array(x[None, :], dtype=np.float64, order="C")   # copies: filtered in place
    zf = np.array(zi[None], dtype=np.float64, order="C")
    kernel(sos, y, zf)
    return y[0], zf[0]
