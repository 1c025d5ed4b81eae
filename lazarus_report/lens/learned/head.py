"""The model's final norm + head + post-head as numpy, with its hand-derived backward pass.

Used to fit the tuned lens at BLAS speed (MLX's CPU ``exp`` is scalar; numpy's is vectorised).
Everything is read from the loaded model through ``LensParts``, never hard-coded per family:

* the unembedding ``E^T`` ``[H, V]`` is the head applied to the identity matrix (works for tied,
  untied and quantized heads alike; the head must be linear without bias, which is checked);
* the final norm must be an RMSNorm ``y = g * x / sqrt(mean(x^2) + eps)``: its effective gain ``g``
  (Gemma's ``1 + weight`` included) is the module's output for a large constant input, ``eps`` comes
  from a small constant input, and the result is checked against the module on random states;
* the post-head transform: none, final logit softcapping ``c * tanh(u / c)`` or a constant scale,
  also checked against the family's own function.

Backward pass of ``z = post(E (g * x * r))`` with ``r = (mean(x^2) + eps)^(-1/2)``, given ``dz``:
``du = dz * post'(u)``; ``dy = du @ E^T``... written here with ``E^T`` stored as ``[H, V]``:
``dy = du @ ET.T``; with ``a = g * dy``: ``dx = r * a - (r^3 / H) * x * (x . a)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ...core.errors import LazarusError
from ...core.runtime import import_mlx

mx = import_mlx()


@dataclass
class NumpyHead:
    et: np.ndarray  # [H, V] float32 unembedding (transposed)
    gain: np.ndarray  # [H] float32 effective RMSNorm gain
    eps: float
    softcap: float | None
    scale: float  # constant post-head multiplier (1.0 when none)
    _et_mx: Any = None  # the same matrix as an MLX array (float32 backward matmul)

    @property
    def hidden_size(self) -> int:
        return int(self.et.shape[0])

    @classmethod
    def of(cls, parts: Any) -> NumpyHead:
        hdim = int(parts.args.hidden_size)
        eye = mx.eye(hdim, dtype=mx.float32)
        et = parts.head(eye).astype(mx.float32)
        zero = parts.head(mx.zeros((1, hdim), dtype=mx.float32)).astype(mx.float32)
        big = parts.norm(mx.full((1, hdim), 1000.0, dtype=mx.float32)).astype(mx.float32)
        small = parts.norm(mx.full((1, hdim), 1e-3, dtype=mx.float32)).astype(mx.float32)
        mx.eval(et, zero, big, small)
        et_np = np.array(et, dtype=np.float32)
        if np.abs(np.asarray(zero)).max() > 0:
            raise LazarusError("the tuned lens needs a bias-free linear head; this model's head has a bias")
        gain = np.asarray(big, dtype=np.float64)[0]  # 1000 / sqrt(1000^2 + eps) == 1 in float32
        ratio = np.asarray(small, dtype=np.float64)[0] / np.where(gain == 0, 1.0, gain)
        valid = np.abs(gain) > 1e-3
        r = float(np.median(ratio[valid])) if valid.any() else 1.0
        eps = max(0.0, 1e-6 * (1.0 / (r * r) - 1.0))
        softcap = parts.softcap
        scale = 1.0
        if parts.family.post_head is not None and not softcap:
            probe = mx.array([[1.0, 2.0]], dtype=mx.float32)
            out = np.asarray(parts.family.post_head(parts.model, probe), dtype=np.float64)
            scale = float(out[0, 0])
            if abs(out[0, 1] - 2 * scale) > 1e-5 * max(1.0, abs(scale)):
                raise LazarusError("the tuned lens does not support this family's post-head transform")
        head = cls(et=et_np, gain=gain.astype(np.float32), eps=eps, softcap=softcap, scale=scale)
        head._check(parts)
        return head

    def _check(self, parts: Any) -> None:
        """The numpy head must reproduce the model's own ``parts.logits`` (else refuse)."""
        rng = np.random.default_rng(0)
        x = (rng.standard_normal((4, self.hidden_size)) * np.array([[0.1], [1.0], [10.0], [100.0]])).astype(np.float32)
        theirs = parts.logits(mx.array(x)).astype(mx.float32)
        mx.eval(theirs)
        ours = self.logits(x)
        theirs_np = np.asarray(theirs)
        err = np.abs(ours - theirs_np).max() / max(1.0, np.abs(theirs_np).max())
        if not err < 1e-3:
            raise LazarusError(
                "the tuned lens needs an RMSNorm final norm; this model's final norm (or head) behaves "
                f"differently (relative difference {err:.2g})"
            )

    def normed(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(``y = g * x * r``, ``r``) for ``x`` ``[N, H]`` float32."""
        ms = np.einsum("nh,nh->n", x, x, dtype=np.float64) / x.shape[1]
        r = (1.0 / np.sqrt(ms + self.eps)).astype(x.dtype)
        return x * r[:, None] * self.gain, r

    def post(self, u: np.ndarray) -> np.ndarray:
        if self.softcap:
            return np.tanh(u / self.softcap) * self.softcap
        if self.scale != 1.0:
            return u * np.float32(self.scale)
        return u

    def logits(self, x: np.ndarray) -> np.ndarray:
        y, _ = self.normed(x)
        return self.post(y @ self.et)

    def _back_matmul(self, du: np.ndarray) -> np.ndarray:
        """``du @ E`` ``[n, V] x [V, H]``. In float32 through MLX: numpy's bundled OpenBLAS runs this
        long-inner-dimension shape 4-5x slower than MLX on the system OpenBLAS (measured: 1.6 s vs 0.35 s
        for 128 x 49152 x 576). float64 inputs (the finite-difference tests) stay in numpy."""
        if du.dtype != np.float32:
            return du @ self.et.T.astype(du.dtype)
        if self._et_mx is None:
            self._et_mx = mx.array(self.et)
        out = mx.array(du) @ self._et_mx.T
        mx.eval(out)
        return np.asarray(out)

    def backward(self, x: np.ndarray, r: np.ndarray, z: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """d loss / d x ``[N, H]`` given d loss / d z ``[N, V]`` (``z`` the post-head logits)."""
        if self.softcap:
            du = dz * (1.0 - (z / self.softcap) ** 2)
        elif self.scale != 1.0:
            du = dz * np.float32(self.scale)
        else:
            du = dz
        dy = self._back_matmul(du)
        a = dy * self.gain
        xa = np.einsum("nh,nh->n", x, a, dtype=np.float64).astype(x.dtype)
        return r[:, None] * a - ((r**3) / x.shape[1] * xa)[:, None] * x
