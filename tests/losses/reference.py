"""Float64 references written row by row, straight from the spec's equations (§2–4)."""

import torch


def g_scale(v, scale, t, k):
    if scale == "none":
        return 1.0
    return 1.0 if v >= t else (v / t) ** abs(k)


def selected(v, mode, thr):
    return mode == "both" or (mode == "less" and v < thr) or (mode == "more" and v >= thr)


def dm_ce_row(z, comps, eta, mode="both", thr=0.5, scale="none", t=1.0, k=1.0,
              smoothing=0.0):
    """One row: ``comps`` is a list of (class, share); repeated classes are merged."""
    merged = {}
    for c, s in comps:
        merged[c] = merged.get(c, 0.0) + s
    n_cls = z.shape[0]
    logp = torch.log_softmax(z, 0)
    loss = -sum(s * logp[c] for c, s in merged.items()) * (1 - smoothing)
    loss = loss - smoothing / n_cls * logp.sum()
    mixed = [c for c, s in merged.items() if s > 0]
    if len(mixed) >= 2:
        for c in mixed:
            s = merged[c]
            if not selected(s, mode, thr):
                continue
            keep = [j for j in range(n_cls) if j == c or j not in mixed]
            log_phi = z[c] - torch.logsumexp(z[keep], 0)
            loss = loss - eta * g_scale(s, scale, t, k) * log_phi
    return loss


def dm_ce(z, y_a, y_b, lam, eta, weight=None, reduction="mean", **kw):
    rows = []
    for i in range(z.shape[0]):
        li = float(lam[i]) if torch.is_tensor(lam) and lam.dim() else float(lam)
        rows.append(dm_ce_row(z[i], [(int(y_a[i]), li), (int(y_b[i]), 1 - li)], eta, **kw))
    rows = torch.stack(rows)
    if weight is not None:
        rows = rows * weight
    return {"mean": rows.mean, "sum": rows.sum, "none": lambda: rows}[reduction]()
