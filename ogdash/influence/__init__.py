"""The baselines the paper compares with, as one score per training sample.

Every public function that returns a *score* returns a float64 array of shape ``(n,)``
where **higher = more detrimental**. Baselines whose native direction is the other way
round are flipped once, in their module, and each docstring says how.

- ``quality``: label-quality scores from predicted probabilities (cleanlab's).
- ``hessian``: influence with the exact Hessian (Eq. 1), TracIn, and ``exact_hessian``.
- ``lissa``: influence and self-influence with LiSSA's inverse-Hessian product.
- ``datainf``: DataInf's influence and self-influence.
- ``matrices``: test x train influence matrices (TracIn, DataInf) for prompt influence.
- ``chunks``: the float64 row-chunk helpers they share.

Influence inputs are per-sample gradient matrices, numpy or torch, any float dtype; all
arithmetic is float64, in row chunks so that a float32 matrix is never copied whole.

``G_train (n, p)``
    Gradient of each training sample's loss at the trained parameters.
``G_ref (m, p)``
    Gradients of the "utility" set whose total loss we care about (a validation set, or
    the training set itself; ``None`` means the training set, as the paper does).
``hessian (p, p)``
    Hessian of the total training objective ``sum_i loss_i + weight_decay/2 * |theta|^2``
    (a *sum*, not a mean), e.g. from ``hessian.exact_hessian``.

With ``v = sum_{z in ref} g_z`` the first-order change of the total reference loss when
training sample ``j`` is removed and the model retrained is ``Delta_j = v^T H^{-1} g_j``.
Removing a detrimental sample lowers that loss (``Delta_j < 0``), so every
reference-based influence score here is ``-Delta_j``. Numerically that is the
expression of the paper's Eq. (1), ``I(z_j) = -sum_z grad(z)^T H^{-1} grad(z_j)``; the
paper's Eq. (2) reads ``I < 0`` as detrimental, whereas here *positive* is detrimental,
which is what a leave-one-out retrain shows (see ``tests/test_baselines.py``).
Self-influence scores (``g_j^T H^{-1} g_j``, Bejan et al. 2023) are returned as they
are: a large self-influence marks a detrimental sample.

This package never imports ``ogdash.detect``: detectors build on it, not the other way.
"""
