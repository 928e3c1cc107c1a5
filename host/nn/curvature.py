"""Gradient and Gauss–Newton curvature of a (model, loss, batch), in the forms optimizers need.

The GGN of the mean loss is G = (1/B) Σ_b J_bᵀ H_b J_b, with J_b = ∂f(x_b)/∂θ (K×P) and H_b the
per-example output-space loss Hessian (K×K). It is never formed unless asked (``ggn_dense``):

- ``ggn_matvec``: G v by a JVP, a K×K multiply and a VJP — O(BP) per product (CG);
- ``ggn_factors``: (J, H) with J (B·K, P) and H (B·K, B·K) block-diagonal, 1/B folded in, so that
  G = Jᵀ H J exactly — what TNGD uploads to the device (r = B·K);
- ``ggn_sqrt``: U (B·k, P) with G = UᵀU, U_b = L_bᵀ J_b / √B (Woodbury solves).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def loss_and_grad(model: Any, loss: Any, theta: np.ndarray, X: np.ndarray,
                  y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean loss over the batch and its gradient w.r.t. θ (one forward, one backward pass)."""
    lin = model.linearize(theta, X)
    return loss.value(lin.out, y), lin.vjp(loss.grad(lin.out, y))


def ggn_matvec(model: Any, loss: Any, theta: np.ndarray, X: np.ndarray, y: np.ndarray,
               v: np.ndarray) -> np.ndarray:
    """G v = (1/B) Σ_b J_bᵀ H_b J_b v without forming G or J."""
    lin = model.linearize(theta, X)
    Jv = lin.jvp(v)                                   # (B, K)
    HJv = np.einsum("bij,bj->bi", loss.hessian(lin.out, y), Jv)
    return lin.vjp(HJv) / lin.batch_size


def ggn_factors(model: Any, loss: Any, theta: np.ndarray, X: np.ndarray,
                y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(J, H): J the stacked per-example Jacobians (B·K, P), H = blockdiag(H_b)/B (B·K, B·K).

    G = Jᵀ H J exactly; row b·K + k of J is ∂f_k(x_b)/∂θ.
    """
    lin = model.linearize(theta, X)
    B, K = lin.out.shape
    return lin.jacobian().reshape(B * K, -1), block_diagonal(loss.hessian(lin.out, y) / B)


def block_diagonal(blocks: np.ndarray) -> np.ndarray:
    """blockdiag(H_1 … H_B), (B·K, B·K), from per-example blocks (B, K, K)."""
    B, K, _ = blocks.shape
    H = np.zeros((B, K, B, K))
    H[np.arange(B), :, np.arange(B), :] = blocks
    return H.reshape(B * K, B * K)


def ggn_sqrt(model: Any, loss: Any, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """U (B·k, P) with G = UᵀU: U_b = L_bᵀ J_b / √B, where H_b = L_b L_bᵀ."""
    lin = model.linearize(theta, X)
    B = lin.batch_size
    L = loss.hessian_sqrt(lin.out, y)                 # (B, K, k)
    U = np.einsum("bkr,bkp->brp", L, lin.jacobian()) / np.sqrt(B)
    return U.reshape(-1, U.shape[-1])


def ggn_dense(model: Any, loss: Any, theta: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """G as a dense, symmetric P×P array (a fresh copy) — small models, tests and baselines."""
    lin = model.linearize(theta, X)
    B = lin.batch_size
    J = lin.jacobian()                                # (B, K, P)
    HJ = np.einsum("bij,bjp->bip", loss.hessian(lin.out, y), J)
    G = J.reshape(-1, J.shape[-1]).T @ HJ.reshape(-1, J.shape[-1]) / B
    return 0.5 * (G + G.T)
