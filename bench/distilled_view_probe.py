# ruff: noqa
"""Scratch for docs/results.md, "The untrained network's view without a second pass" (issue 26); removed once recorded."""

import numpy as np


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def loo(feats, labels):
    s = feats @ feats.T
    np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1)[:, :4]
    rel = labels[order] == labels[:, None]
    return round(rel.mean(), 4), round(rel[:, 0].mean(), 4)


tr, te = np.load("runs/distill/cub.npz"), np.load("runs/distill/other.npz")
mean, P = tr["mean"], tr["projection"]
y = te["labels"]


def fit_pred(X, Xt, Y, lam):
    mu, sd = X.mean(0), X.std(0) + 1e-6
    X, Xt = (X - mu) / sd, (Xt - mu) / sd
    W = np.linalg.solve(X.T @ X + lam * len(X) / 100 * np.eye(X.shape[1]), X.T @ (Y - Y.mean(0)))
    return unit(Xt @ W + Y.mean(0))


head, headt = tr["head"], te["head"]
for dim in (256, 128):
    proj = lambda g: unit((unit(g) - mean) @ P[:dim].T)
    Y, true = proj(tr["gen"]), proj(te["gen"])
    print(
        "dim",
        dim,
        "true",
        loo(true, y),
        "combo true",
        loo(np.hstack([np.sqrt(0.5) * te["desc"], np.sqrt(0.5) * true]), y),
    )
    for name, sl in (("gmp+gap", slice(None)), ("gmp", slice(0, 1280)), ("gap", slice(1280, None))):
        for lam in (0.3, 1, 3, 10):
            pred = fit_pred(head[:, sl], headt[:, sl], Y, lam)
            print(
                dim,
                name,
                lam,
                "cos",
                round((pred * true).sum(1).mean(), 3),
                "pred",
                loo(pred, y),
                "combo .4 .5 .6",
                [loo(np.hstack([np.sqrt(1 - b) * te["desc"], np.sqrt(b) * pred]), y) for b in (0.4, 0.5, 0.6)],
                flush=True,
            )
sub = np.arange(0, len(head), 3)[:2000]
proj = lambda g: unit((unit(g) - mean) @ P.T)
pred = fit_pred(head[sub], headt, proj(tr["gen"])[sub], 10)
print("2000 photos lam10", loo(pred, y), loo(np.hstack([np.sqrt(0.5) * te["desc"], np.sqrt(0.5) * pred]), y))
pred = fit_pred(head[sub], headt, proj(tr["gen"])[sub], 3)
print("2000 photos lam3", loo(pred, y), loo(np.hstack([np.sqrt(0.5) * te["desc"], np.sqrt(0.5) * pred]), y))
