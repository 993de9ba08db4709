"""IIR filters and filter design in numpy alone, so that the daemon never loads scipy.

``scipy.signal`` costs 78 MB of resident memory on import, more than the rest
of the daemon together (docs/results.md, *Footprint*). The daemon needs only a
fixed biquad (RNNoise's high-pass), a low-pass FIR for the pitch search's
decimator, and the generated demo audio's small filters; these are they.

A recursion ``y[n] = x[n] + a1 y[n-1] + ...`` cannot be vectorised as written.
Split into first-order sections by partial fractions (distinct poles ``p``),
each section has a closed form over a block of ``L`` samples::

    w[n] = p**n * (p * w[-1] + cumsum(u[k] * p**-k)[n])

which numpy computes with a handful of vector operations. ``|p|**-L`` bounds
how much rounding the cumulative sum amplifies; blocks are cut so that it stays
below :data:`MAX_GROWTH` (about 3 digits of float64's 16). The results match
``scipy.signal.lfilter`` to about 1e-12 (tests/test_iir.py).
"""

import numpy as np

#: Largest ``|p|**-L`` a block may reach: the factor by which rounding in the cumulative sum can grow.
MAX_GROWTH = 1e3
#: Longest block, whatever the poles (memory of the precomputed powers).
MAX_BLOCK = 4096


def _sections(b, a):
    """``(direct, poles, residues, weights)``: B(z)/A(z) = direct + sum(residues / (1 - poles z^-1)).

    Of each conjugate pole pair only the pole with positive imaginary part is
    kept, with weight 2 (its section's real part counts twice); real poles
    have weight 1. Repeated poles are refused: partial fractions need distinct
    poles, and the filters here have none.
    """
    a = np.trim_zeros(np.asarray(a, dtype=np.float64), "b")
    b = np.asarray(b, dtype=np.float64) / a[0]
    a = a / a[0]
    order = a.size - 1
    if b.size > a.size:
        raise ValueError("IIR filter with more zeros than poles; apply the extra FIR part separately")
    if order == 0:
        return b[0], np.zeros(0, complex), np.zeros(0, complex), np.zeros(0)
    b = np.concatenate([b, np.zeros(a.size - b.size)])
    direct = b[-1] / a[-1]
    remainder = b - direct * a                              # degree < order in z^-1
    poles = np.roots(a)
    gaps = np.abs(poles[:, None] - poles[None, :]) + np.eye(order)
    if gaps.min() < 1e-9:
        raise ValueError("IIR filter with repeated poles; split it into sections with distinct poles")
    # Residue at p_i: R(1/p_i) / prod_{j != i} (1 - p_j / p_i), with R a polynomial in z^-1.
    residues = np.array([np.polyval(remainder[::-1], 1.0 / poles[i]) / np.prod(np.delete(1.0 - poles / poles[i], i))
                         for i in range(order)])
    tolerance = 1e-12 * np.abs(poles)
    real = np.abs(poles.imag) <= tolerance
    keep = real | (poles.imag > tolerance)
    poles = np.where(real, poles.real + 0j, poles)
    residues = np.where(real, residues.real + 0j, residues)
    return direct, poles[keep], residues[keep], np.where(real[keep], 1.0, 2.0)


def _block_length(poles):
    smallest = np.min(np.abs(poles)) if poles.size else 1.0
    if poles.size and np.max(np.abs(poles)) >= 1.0:
        raise ValueError("unstable IIR filter (a pole on or outside the unit circle)")
    return int(max(1, min(MAX_BLOCK, np.log(MAX_GROWTH) // -np.log(smallest)))) if poles.size else MAX_BLOCK


class StreamIIR:
    """``scipy.signal.lfilter(b, a, x)`` over a stream of blocks, with its state carried between them.

    ``process(block)`` returns the filtered block (a new array). The state is
    one complex value per first-order section; :meth:`reset` clears it.
    Section states below ``flush_below`` are set to 0, so that a silent input
    never leaves the filter in denormal numbers (a 100-fold slowdown on some
    CPUs). ``b`` may have at most as many coefficients as ``a``.
    """

    def __init__(self, b, a, flush_below=1e-30):
        self.direct, self.poles, residues, weights = _sections(b, a)
        self.block = _block_length(self.poles)
        k = np.arange(self.block)
        self._down = [p ** -k for p in self.poles]                     # p^-k
        self._out = [w * r * p ** k for p, r, w in zip(self.poles, residues, weights)]  # weighted residue * p^k
        self._sections = list(zip(range(self.poles.size), self.poles.tolist(), self._down, self._out))
        self._last = {self.block: [p ** (self.block - 1) for p in self.poles]}   # p^(n-1) by block length n
        self.flush_below = flush_below
        self.section_state = np.zeros(self.poles.size, complex)
        self._work = np.empty(self.block, complex)

    def reset(self):
        self.section_state[:] = 0.0

    def process(self, block, out=None):
        """Filter the next samples of the stream; into ``out`` (same length) when given."""
        block = np.asarray(block, dtype=np.float64)
        out = np.multiply(block, self.direct, out=out)
        if 0 < block.size <= self.block:              # a streaming frame: one block
            self._add_sections(block, out)
            return out
        for start in range(0, block.size, self.block):
            self._add_sections(block[start:start + self.block], out[start:start + self.block])
        return out

    def _add_sections(self, x, out):
        """``out += sum(weight * Re(residue * w))`` with ``w[n] = p^n (p w[-1] + cumsum(x[k] p^-k)[n])``."""
        n = x.size
        work = self._work[:n]
        last = self._last.get(n)
        if last is None:
            last = self._last[n] = [p ** (n - 1) for p in self.poles]
        state = self.section_state
        for i, pole, down, weighted_out in self._sections:
            np.multiply(x, down[:n], out=work)
            work.cumsum(out=work)
            work += pole * state[i]
            end = work[-1] * last[i]
            state[i] = end if abs(end) >= self.flush_below else 0.0
            np.multiply(work, weighted_out[:n], out=work)
            out += work.real


def lfilter(b, a, x):
    """``scipy.signal.lfilter(b, a, x)`` for a 1-D signal from rest (zero initial state)."""
    return StreamIIR(b, a, flush_below=0.0).process(x)


def butter2_highpass(cutoff_hz, rate_hz):
    """``scipy.signal.butter(2, cutoff_hz, "highpass", fs=rate_hz)``: the bilinear transform, pre-warped."""
    k = np.tan(np.pi * cutoff_hz / rate_hz)
    norm = 1.0 + np.sqrt(2.0) * k + k * k
    b = np.array([1.0, -2.0, 1.0]) / norm
    a = np.array([1.0, 2.0 * (k * k - 1.0) / norm, (1.0 - np.sqrt(2.0) * k + k * k) / norm])
    return b, a


def firwin_lowpass(numtaps, cutoff_hz, rate_hz):
    """``scipy.signal.firwin(numtaps, cutoff_hz, fs=rate_hz)``: a Hamming-windowed sinc, unity gain at DC."""
    cutoff = cutoff_hz / (rate_hz / 2.0)                      # in units of Nyquist, as firwin takes it
    m = np.arange(numtaps) - (numtaps - 1) / 2.0
    taps = cutoff * np.sinc(cutoff * m) * np.hamming(numtaps)
    return taps / taps.sum()
