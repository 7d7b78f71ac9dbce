"""Bootstrap confidence intervals of the gradient statistics (`gradients.GradientStats`), over the gradient samples.

Glossary of shapes: N samples, P policy parameters (all leaves flattened), B bootstrap resamples.

    gradient_intervals(samples, reference_samples)   # {"mean_norm_ci": [lo, hi], "variance_ci": ..., "snr_ci": ...,
                                                      #  "cosine_ci": ..., "relative_error_ci": ...}

Sample i of a model and sample i of the simulator share their key (common random numbers, `gradients`), so the
resampling is paired: each bootstrap resample draws the same indices for both, and the reference is the resampled
simulator mean. The cosine's and the relative error's intervals thus carry the noise of both means. Percentile
intervals from a fixed seed, so a report is reproducible; with few samples (N = 4 has 35 distinct resamples) they are
coarse, never a substitute for more samples.
"""
from __future__ import annotations

import jax
import numpy as np

N_BOOT = 1000
LEVEL = 0.95
QUANTITIES = ("mean_norm", "variance", "snr", "cosine", "relative_error")
_CHUNK = 250  # resamples per matrix product: B x P floats at a time


def _flat(samples) -> np.ndarray:
    """Pytree with leading [N] -> [N, P] float64."""
    leaves = jax.tree.leaves(samples)
    n = np.shape(leaves[0])[0]
    return np.concatenate([np.asarray(leaf, np.float64).reshape(n, -1) for leaf in leaves], axis=1)


def _interval(values: np.ndarray, level: float) -> list[float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    return [float(v) for v in np.percentile(values, [tail, 100 - tail])]


def gradient_intervals(samples, reference_samples=None, *, n_boot: int = N_BOOT, level: float = LEVEL,
                       seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (probability `level`) of ‖ḡ‖, tr Σ̂, SNR and, given the reference's paired
    samples (the simulator's, same N), of the cosine and relative error of ḡ to the reference mean.

    samples, reference_samples: pytrees with a leading [N] axis (or [N, P] arrays). Samples with a non-finite entry
    (in either) are left out, as in `gradient_stats`. Returns {"<quantity>_ci": [low, high]}, NaN where fewer than two
    finite samples remain or the quantity is undefined in every resample."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    g = _flat(samples)  # [N, P]
    r = None if reference_samples is None else _flat(reference_samples)
    if r is not None and r.shape != g.shape:
        raise ValueError(f"reference_samples must have the samples' shape {g.shape}, got {r.shape}")
    keep = np.all(np.isfinite(g), axis=1) & (True if r is None else np.all(np.isfinite(r), axis=1))
    g = g[keep]
    r = None if r is None else r[keep]
    names = QUANTITIES if r is not None else QUANTITIES[:3]
    n = g.shape[0]
    if n < 2:
        return {f"{q}_ci": [float("nan"), float("nan")] for q in names}
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # [B, N]
    sq = np.sum(g * g, axis=1)  # [N]
    out = {q: [] for q in names}
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, n_boot, _CHUNK):
            c = counts[start:start + _CHUNK]
            m = c @ g / n  # [B, P] resampled means
            norm = np.linalg.norm(m, axis=1)
            var = np.maximum((c @ sq - n * norm ** 2) / (n - 1), 0.0)  # Σ_i c_i ‖g_i - m‖² / (n - 1)
            out["mean_norm"].append(norm)
            out["variance"].append(var)
            out["snr"].append(norm / np.sqrt(var))
            if r is not None:
                ref = c @ r / n  # [B, P]
                ref_norm = np.linalg.norm(ref, axis=1)
                out["cosine"].append(np.sum(m * ref, axis=1) / (norm * ref_norm))
                out["relative_error"].append(np.linalg.norm(m - ref, axis=1) / ref_norm)
    return {f"{q}_ci": _interval(np.concatenate(v), level) for q, v in out.items()}

