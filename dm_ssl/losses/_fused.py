"""Fused CPU kernel of the two-component DM(CE) and MCE losses (spec §3), compiled on first use.

At the batch sizes of mixup training (N ≈ 448, C ≈ 100) the composed-operator version of
:mod:`dm_ssl.losses.dm_ce` spends its time in per-operator dispatch, not on the logits. Here the
whole loss, reduction included, is one autograd node written in C++ (``DMPairLoss``):

* forward: per row, a max and an exp-sum over R = {1..C} \\ {a, b} (two passes over the row,
  as a softmax; the row is copied into a −inf-padded buffer so both passes are whole vectors);
  then every per-row scalar (the normalisers ``lse_R`` and ``lse_all``, softplus) in one loop
  vectorised across rows;
* backward: the per-row coefficients vectorised across rows, then one pass per row writing
  ``softmax_R · d/d lse_R`` and the two mixed columns.

The math is the one of ``_DecoupledCE`` on ``_pair_rows`` (same stable two-term normalisers,
no normaliser by subtraction, same softplus threshold); float32 uses Cephes' exp/log
polynomials (~1 ulp) so that the loops vectorise, float64 the C library. MCE is the same
kernel with η = 0. Single-threaded: at these sizes a thread pool costs more than it saves.

Built with ``torch.utils.cpp_extension.load_inline`` (a C++ compiler and ninja; ~30 s once,
cached in torch's extension folder under a name that includes the CPU capability).
``DM_SSL_FUSED_CPU``: ``auto`` (default: build on first CPU use, fall back to the composed
version with one warning if that fails), ``0`` (never), ``1`` (a failed build is an error).
CUDA tensors, CPU autocast, a differentiable ``weight`` and other dtypes than
float32/float64 take the composed version.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Optional

import torch
from torch import Tensor

MODE_CODES = {"both": 0, "less": 1, "more": 2}
SCALE_CODES = {"none": 0, "pow": 1}
REDUCTION_CODES = {"none": 0, "mean": 1, "sum": 2}

_SOURCE = r"""
#include <torch/extension.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

// exp for float, branch-free so that the loops below vectorise (Cephes' expf polynomial,
// ~1 ulp on [-87, 88]; arguments below -87.3 give ~1e-38 instead of 0, harmless in sums).
__attribute__((always_inline)) inline float vexp(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  float fx = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  int32_t n = static_cast<int32_t>(fx) + 127;
  float p;
  int32_t bits = n << 23;
  std::memcpy(&p, &bits, sizeof(p));
  return y * p;
}
inline double vexp(double x) { return std::exp(x); }

// log for float arguments >= 1e-38 (Cephes' logf polynomial, ~1 ulp), inlined like vexp.
__attribute__((always_inline)) inline float vlog(float x) {
  x = std::max(x, 1.17549435e-38f);
  int32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  int32_t e = ((bits >> 23) & 0xff) - 126;
  bits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  float mnt;
  std::memcpy(&mnt, &bits, sizeof(mnt));
  bool small = mnt < 0.707106781186547524f;
  float fe = static_cast<float>(e) - (small ? 1.0f : 0.0f);
  float xm = small ? mnt + mnt - 1.0f : mnt - 1.0f;
  float z = xm * xm;
  float y = 7.0376836292e-2f;
  y = y * xm - 1.1514610310e-1f;
  y = y * xm + 1.1676998740e-1f;
  y = y * xm - 1.2420140846e-1f;
  y = y * xm + 1.4249322787e-1f;
  y = y * xm - 1.6668057665e-1f;
  y = y * xm + 2.0000714765e-1f;
  y = y * xm - 2.4999993993e-1f;
  y = y * xm + 3.3333331174e-1f;
  y = y * xm * z - fe * 2.12194440e-4f - 0.5f * z;
  return xm + y + fe * 0.693359375f;
}
inline double vlog(double x) { return std::log(x); }

constexpr int64_t LANES = 16;
inline int64_t padded(int64_t C) { return (C + LANES - 1) / LANES * LANES; }

// Rows are copied into buffers padded to a multiple of LANES with −inf, so that every loop
// below runs whole vectors (a scalar epilogue of vexp costs as much as the vector body).

// max of a padded row: LANES independent lanes, an element-wise max the compiler vectorises
// (a single running max is a reduction it may not reorder).
template <typename T> inline T row_max(const T* z, int64_t Cp) {
  T acc[LANES];
  for (int j = 0; j < LANES; ++j) acc[j] = z[j];
  for (int64_t c = LANES; c < Cp; c += LANES) {
#pragma omp simd
    for (int j = 0; j < LANES; ++j) acc[j] = z[c + j] > acc[j] ? z[c + j] : acc[j];
  }
  T m = acc[0];
  for (int j = 1; j < LANES; ++j) m = acc[j] > m ? acc[j] : m;
  return m;
}
// Σ_c exp(z_c − m) over a padded row; −inf entries add ~1e-38 each (vexp's clamp), nothing
// next to the exp(0) = 1 of the maximum.
template <typename T> inline T row_sumexp(const T* z, int64_t Cp, T m) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < Cp; ++c) s += vexp(z[c] - m);
  return s;
}
template <typename T> inline T row_sum(const T* z, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t c = 0; c < n; ++c) s += z[c];
  return s;
}

struct Params {
  double eta; int64_t mode; double thr; int64_t scale; double t; double k; double eps;
};

template <typename T> inline T comp_eta(T share, bool two_mixed, const Params& p) {
  if (!two_mixed) return 0;
  if (p.mode == 1 && !(share < (T)p.thr)) return 0;
  if (p.mode == 2 && !(share >= (T)p.thr)) return 0;
  T w = (T)p.eta;
  if (p.scale == 1 && !(share >= (T)p.t)) w *= std::pow(share / (T)p.t, (T)std::abs(p.k));
  return w;
}
// softplus as the composed version (threshold 40); float: max(x, 0) + log(1 + e^{−|x|}).
inline double softplus(double x) { return x > 40 ? x : std::log1p(std::exp(x)); }
inline float softplus(float x) {
  return x > 40 ? x : std::max(x, 0.0f) + vlog(1.0f + vexp(-std::abs(x)));
}
template <typename T> inline T sigmoid(T x) {
  T e = vexp(-std::abs(x));  // ≤ 1: no overflow
  return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

// Per-row inputs gathered once: the two mixed logits, same-class flag and decoupled weights.
template <typename T> struct Rows {
  std::vector<T> za, zb, same, eta_a, eta_b;
  Rows(const T* z, const int64_t* ya, const int64_t* yb, const T* lam, int64_t N, int64_t C,
       const Params& p) : za(N), zb(N), same(N), eta_a(N), eta_b(N) {
    for (int64_t i = 0; i < N; ++i) {
      int64_t a = ya[i], b = yb[i];
      za[i] = z[i * C + a];
      zb[i] = z[i * C + b];
      same[i] = a == b ? T(1) : T(0);
      bool two = (lam[i] * (1 - lam[i]) > 0) && a != b;  // two mixed classes in the row
      eta_a[i] = comp_eta(lam[i], two, p);
      eta_b[i] = comp_eta(1 - lam[i], two, p);
    }
  }
};

// Forward: the passes over the logits row by row (vectorised along the row), then every
// per-row scalar (normalisers, softplus) in one loop vectorised across rows.
template <typename T>
void forward_impl(const T* z, const int64_t* ya, const int64_t* yb, const T* lam, T* rows,
                  T* lse_r_out, T* lse_all_out, int64_t N, int64_t C, const Params& p) {
  const T ninf = -std::numeric_limits<T>::infinity();
  const int64_t Cp = padded(C);
  const T eps = (T)p.eps;
  std::vector<T> buf(Cp, ninf), m(N), s(N), mean(N, T(0));
  for (int64_t i = 0; i < N; ++i) {  // max and Σ exp over R = the row but a and b
    const T* zr = z + i * C;
    std::memcpy(buf.data(), zr, C * sizeof(T));
    buf[ya[i]] = ninf;
    buf[yb[i]] = ninf;
    m[i] = row_max(buf.data(), Cp);
    s[i] = m[i] > ninf ? row_sumexp(buf.data(), Cp, m[i]) : T(1);
    if (eps != 0) mean[i] = row_sum(zr, C) / (T)C;
  }
  Rows<T> r(z, ya, yb, lam, N, C, p);
  const T *za = r.za.data(), *zb = r.zb.data(), *same = r.same.data();
  const T *ea = r.eta_a.data(), *eb = r.eta_b.data(), *mm = m.data(), *ss = s.data();
  const T* mn = mean.data();
#pragma omp simd
  for (int64_t i = 0; i < N; ++i) {
    bool has_r = mm[i] > ninf, one = same[i] != 0;
    T lse_r = has_r ? mm[i] + vlog(ss[i]) : ninf;
    T top = std::max(mm[i], one ? za[i] : std::max(za[i], zb[i]));
    // every term ≤ 1 and one of them is 1: the log's argument is in [1, 3]
    T lse_all = vlog((has_r ? vexp(lse_r - top) : T(0)) + vexp(za[i] - top) +
                     (one ? T(0) : vexp(zb[i] - top))) + top;
    rows[i] = ea[i] * softplus(lse_r - za[i]) + eb[i] * softplus(lse_r - zb[i]) + lse_all -
              (1 - eps) * (lam[i] * za[i] + (1 - lam[i]) * zb[i]) - eps * mn[i];
    lse_r_out[i] = lse_r;
    lse_all_out[i] = lse_all;
  }
}

// Backward: per-row coefficients vectorised across rows, then one pass per row writing
// softmax_R · d/d lse_R, and the two mixed columns.
template <typename T>
void backward_impl(const T* g, const T* z, const int64_t* ya, const int64_t* yb, const T* lam,
                   const T* lse_r_in, const T* lse_all_in, T* grad, int64_t N, int64_t C,
                   const Params& p) {
  const T ninf = -std::numeric_limits<T>::infinity();
  const int64_t Cp = padded(C);
  const T eps = (T)p.eps;
  Rows<T> r(z, ya, yb, lam, N, C, p);
  std::vector<T> d_rest(N), d_a(N), d_b(N), shift(N);
  const T *za = r.za.data(), *zb = r.zb.data(), *same = r.same.data();
  const T *ea = r.eta_a.data(), *eb = r.eta_b.data();
#pragma omp simd
  for (int64_t i = 0; i < N; ++i) {
    T gi = g[i], lse_r = lse_r_in[i], lse_all = lse_all_in[i];
    T rho_a = ea[i] * gi * sigmoid(lse_r - za[i]);   // η_a (1 − φ_a), stable
    T rho_b = eb[i] * gi * sigmoid(lse_r - zb[i]);
    d_rest[i] = gi * (lse_r > ninf ? vexp(lse_r - lse_all) : T(0)) + rho_a + rho_b;
    T keep = gi * (1 - eps);
    d_a[i] = gi * vexp(za[i] - lse_all) - rho_a - lam[i] * keep;
    d_b[i] = (same[i] != 0 ? T(0) : gi * vexp(zb[i] - lse_all)) - rho_b - (1 - lam[i]) * keep;
    shift[i] = eps * gi / (T)C;
  }
  std::vector<T> zin(Cp, T(0)), gout(Cp);
  for (int64_t i = 0; i < N; ++i) {
    const T* zr = z + i * C;
    T* gr = grad + i * C;
    T lse_r = lse_r_in[i], dr = d_rest[i], sh = shift[i];
    if (lse_r > ninf) {  // softmax over R · d_rest (the mixed columns are overwritten below)
      std::memcpy(zin.data(), zr, C * sizeof(T));
#pragma omp simd
      for (int64_t c = 0; c < Cp; ++c) gout[c] = vexp(zin[c] - lse_r) * dr - sh;
      std::memcpy(gr, gout.data(), C * sizeof(T));
    } else {  // R is empty
      for (int64_t c = 0; c < C; ++c) gr[c] = -sh;
    }
    int64_t a = ya[i], b = yb[i];
    if (a == b) {
      gr[a] = d_a[i] + d_b[i] - sh;
    } else {
      gr[a] = d_a[i] - sh;
      gr[b] = d_b[i] - sh;
    }
  }
}

Params params(double eta, int64_t mode, double thr, int64_t scale, double t, double k,
              double eps) {
  return Params{eta, mode, thr, scale, t, k, eps};
}

}  // namespace

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// The loss as one autograd node built in C++ (a Python autograd.Function alone costs about as
// much as the whole kernel at N ≈ 448). reduction: 0 none, 1 mean (over all N rows), 2 sum;
// weight: per-row weights (non-differentiable) or an empty tensor.
struct DMPairLoss : public torch::autograd::Function<DMPairLoss> {
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor z, torch::Tensor ya,
                               torch::Tensor yb, torch::Tensor lam, torch::Tensor weight,
                               double eta, int64_t mode, double thr, int64_t scale, double t,
                               double k, double eps, int64_t reduction) {
    z = z.contiguous();
    int64_t N = z.size(0), C = z.size(1);
    auto rows = torch::empty({N}, z.options());
    auto lse_r = torch::empty({N}, z.options());
    auto lse_all = torch::empty({N}, z.options());
    Params p{eta, mode, thr, scale, t, k, eps};
    torch::Tensor out;
    AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "dm_pair_loss", [&] {
      scalar_t* r = rows.data_ptr<scalar_t>();
      forward_impl<scalar_t>(z.data_ptr<scalar_t>(), ya.data_ptr<int64_t>(),
                             yb.data_ptr<int64_t>(), lam.data_ptr<scalar_t>(), r,
                             lse_r.data_ptr<scalar_t>(), lse_all.data_ptr<scalar_t>(), N, C, p);
      if (weight.numel() > 0) {
        const scalar_t* w = weight.data_ptr<scalar_t>();
        for (int64_t i = 0; i < N; ++i) r[i] *= w[i];
      }
      if (reduction == 0) {
        out = rows;
      } else {
        double total = 0;
        for (int64_t i = 0; i < N; ++i) total += r[i];
        out = torch::scalar_tensor(reduction == 1 ? total / (double)N : total, z.options());
      }
    });
    ctx->save_for_backward({z, ya, yb, lam, weight, lse_r, lse_all});
    ctx->saved_data["eta"] = eta;
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["thr"] = thr;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["t"] = t;
    ctx->saved_data["k"] = k;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduction"] = reduction;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    torch::Tensor z = saved[0], ya = saved[1], yb = saved[2], lam = saved[3], weight = saved[4];
    torch::Tensor lse_r = saved[5], lse_all = saved[6];
    auto& d = ctx->saved_data;
    Params p{d["eta"].toDouble(), d["mode"].toInt(), d["thr"].toDouble(), d["scale"].toInt(),
             d["t"].toDouble(), d["k"].toDouble(), d["eps"].toDouble()};
    int64_t reduction = d["reduction"].toInt();
    int64_t N = z.size(0), C = z.size(1);
    auto grad = torch::empty_like(z);
    auto g = torch::empty({N}, z.options());
    AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "dm_pair_loss_backward", [&] {
      scalar_t* gi = g.data_ptr<scalar_t>();
      if (reduction == 0) {
        auto go = grads[0].contiguous().to(z.scalar_type());
        std::memcpy(gi, go.data_ptr<scalar_t>(), N * sizeof(scalar_t));
      } else {
        double go = grads[0].item<double>();
        scalar_t each = (scalar_t)(reduction == 1 ? go / (double)N : go);
        for (int64_t i = 0; i < N; ++i) gi[i] = each;
      }
      if (weight.numel() > 0) {
        const scalar_t* w = weight.data_ptr<scalar_t>();
        for (int64_t i = 0; i < N; ++i) gi[i] *= w[i];
      }
      backward_impl<scalar_t>(gi, z.data_ptr<scalar_t>(), ya.data_ptr<int64_t>(),
                              yb.data_ptr<int64_t>(), lam.data_ptr<scalar_t>(),
                              lse_r.data_ptr<scalar_t>(), lse_all.data_ptr<scalar_t>(),
                              grad.data_ptr<scalar_t>(), N, C, p);
    });
    torch::Tensor none;
    return {grad, none, none, none, none, none, none, none, none, none, none, none, none};
  }
};

}  // namespace

torch::Tensor dm_pair_loss(torch::Tensor z, torch::Tensor ya, torch::Tensor yb,
                           torch::Tensor lam, c10::optional<torch::Tensor> weight, double eta,
                           int64_t mode, double thr, int64_t scale, double t, double k,
                           double eps, int64_t reduction) {
  // no weight: an empty tensor (autograd's apply wants defined tensors)
  torch::Tensor w = weight.has_value() ? weight->contiguous() : torch::empty({0}, z.options());
  return DMPairLoss::apply(z, ya.contiguous(), yb.contiguous(), lam.contiguous(), w, eta, mode,
                           thr, scale, t, k, eps, reduction);
}
"""

_ENV = "DM_SSL_FUSED_CPU"
_enabled = True  # switched off by fused_cpu(False), e.g. to test the composed version


@contextmanager
def fused_cpu(enabled: bool) -> Iterator[None]:
    """Within the block, use (True) or bypass (False) the fused kernel where it applies."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


# Compiler flags per CPU capability (torch's own dispatch levels). The capability is part of
# the extension's name, so a cache shared by machines of different CPUs never hands one a
# binary it cannot run.
_ARCH_FLAGS = {"avx512": ["-march=x86-64-v4"], "avx2": ["-march=x86-64-v3"]}


def _ninja_on_path() -> None:
    """torch looks for ``ninja`` on PATH; the ``ninja`` wheel puts it next to the interpreter,
    which is not on PATH when the venv is not activated."""
    import shutil
    import sys

    if shutil.which("ninja") is None:
        bindir = os.path.dirname(sys.executable)
        if os.path.exists(os.path.join(bindir, "ninja")):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


@lru_cache(maxsize=1)
def load_kernel() -> Optional[Any]:
    """The compiled module, or None when ``DM_SSL_FUSED_CPU=0`` or the build failed (auto)."""
    setting = os.environ.get(_ENV, "auto").strip().lower()
    if setting in ("0", "false", "off", "no"):
        return None
    try:
        from torch.utils.cpp_extension import load_inline

        _ninja_on_path()
        capability = torch.backends.cpu.get_cpu_capability().lower()
        flags = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math",
                 *_ARCH_FLAGS.get(capability, [])]
        return load_inline(name=f"dm_ssl_fused_dm_ce_v1_{capability}", cpp_sources=[_SOURCE],
                           functions=["dm_pair_loss"], extra_cflags=flags, verbose=False)
    except Exception as err:  # no compiler / ninja: the composed version still works
        if setting in ("1", "true", "on", "yes"):
            raise RuntimeError(f"{_ENV}=1 but the fused DM(CE) CPU kernel did not build: "
                               f"{err}") from err
        first = str(err).splitlines()[0] if str(err) else ""
        warnings.warn(f"dm_ssl: the fused DM(CE) CPU kernel did not build ({type(err).__name__}:"
                      f" {first}); using the composed version (slower on small batches). "
                      f"Set {_ENV}=0 to silence this.", RuntimeWarning, stacklevel=3)
        return None


def usable_for(z: Tensor, weight: Optional[Tensor], lam: Tensor) -> bool:
    """Whether :func:`fused_pair_loss` can take this call: CPU float32/float64 logits, a
    non-empty batch, no gradient wanted for ``weight`` or ``lam``, the kernel built."""
    return (_enabled and z.device.type == "cpu" and z.dtype in (torch.float32, torch.float64)
            and z.dim() == 2 and z.shape[0] > 0 and not lam.requires_grad
            and (weight is None or not weight.requires_grad)
            and not torch.is_autocast_enabled("cpu") and load_kernel() is not None)


def fused_pair_loss(z: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor, weight: Optional[Tensor],
                    eta: float, mode: str, thr: float, scale: str, t: float, k: float,
                    smoothing: float, reduction: str) -> Tensor:
    """Reduced two-component DM(CE) through the compiled kernel; the same value and gradient
    as ``reduce_rows(_pair_rows(...), weight, reduction)`` (checked inputs assumed)."""
    return load_kernel().dm_pair_loss(
        z, y_a.long(), y_b.long(), lam.to(z.dtype), None if weight is None else
        weight.to(z.dtype), float(eta), MODE_CODES[mode], float(thr), SCALE_CODES[scale],
        float(t), float(k), float(smoothing), REDUCTION_CODES[reduction])
