"""L-BFGS run on many independent problems at once, each exactly as torch.optim.LBFGS would.

DLG and iDLG optimise each image with torch's L-BFGS (no line search). Batching jobs makes
every model evaluation serve B images, but torch's optimiser treats its parameters as one
problem: one history, one step size, one stopping rule. This one keeps all of them per
problem (row): the two-loop recursion, the first-step scaling min(1, 1/|g|_1) * lr, the
curvature condition ys > 1e-10, the history cap, and the inner-loop exits (max_iter,
max_eval, tolerance on the gradient, the step and the loss change). A row whose inner loop
has ended stands still until the next ``step``, as it would between calls to torch's
``step``. So a row's trajectory does not depend on which other rows share the batch; a test
compares it with torch.optim.LBFGS.
"""

from __future__ import annotations

from typing import Callable

import torch

Closure = Callable[[], tuple[torch.Tensor, torch.Tensor]]


class BatchedLBFGS:
    """``closure()`` returns (losses (B,), flat gradients (B, P)); ``move(delta)`` adds (B, P)."""

    def __init__(self, batch: int, size: int, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9, history_size: int = 100,
                 dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        self.lr, self.max_iter = lr, max_iter
        self.max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
        self.tol_grad, self.tol_change, self.history = tolerance_grad, tolerance_change, history_size
        z = dict(dtype=dtype, device=device)
        self.n_iter = torch.zeros(batch, dtype=torch.long, device=device)
        self.d = torch.zeros(batch, size, **z)
        self.t = torch.zeros(batch, **z)
        self.prev_grad = torch.zeros(batch, size, **z)
        self.h_diag = torch.ones(batch, **z)
        self.ys_hist = torch.zeros(batch, history_size, size, **z)  # y (gradient change) per slot
        self.ss_hist = torch.zeros(batch, history_size, size, **z)  # s (step) per slot
        self.ro_hist = torch.zeros(batch, history_size, **z)
        self.count = torch.zeros(batch, dtype=torch.long, device=device)  # entries used (<= history)
        self.head = torch.zeros(batch, dtype=torch.long, device=device)  # next slot to write
        self.rows = torch.arange(batch, device=device)

    def _direction(self, grad: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
        """The L-BFGS direction per row; rows in ``fresh`` (first iteration) take -grad."""
        q = -grad
        alphas = []
        depth = int(self.count.max()) if len(self.count) else 0
        for j in range(depth):  # newest to oldest
            slot = (self.head - 1 - j) % self.history
            valid = (j < self.count).to(grad.dtype)
            s, y, ro = self.ss_hist[self.rows, slot], self.ys_hist[self.rows, slot], self.ro_hist[self.rows, slot]
            a = (s * q).sum(1) * ro * valid
            q = q - a[:, None] * y
            alphas.append((slot, valid, a))
        r = q * self.h_diag[:, None]
        for slot, valid, a in reversed(alphas):  # oldest to newest
            s, y, ro = self.ss_hist[self.rows, slot], self.ys_hist[self.rows, slot], self.ro_hist[self.rows, slot]
            b = (y * r).sum(1) * ro
            r = r + ((a - b) * valid)[:, None] * s
        return torch.where(fresh[:, None], -grad, r)

    def _remember(self, grad: torch.Tensor, rows: torch.Tensor) -> None:
        y = grad - self.prev_grad
        s = self.d * self.t[:, None]
        ys = (y * s).sum(1)
        keep = rows & (ys > 1e-10)
        if keep.any():
            idx = self.rows[keep]
            slot = self.head[keep]
            self.ys_hist[idx, slot] = y[keep]
            self.ss_hist[idx, slot] = s[keep]
            self.ro_hist[idx, slot] = 1.0 / ys[keep]
            self.head[keep] = (slot + 1) % self.history
            self.count[keep] = torch.clamp(self.count[keep] + 1, max=self.history)
            self.h_diag[keep] = ys[keep] / (y[keep] * y[keep]).sum(1)

    @torch.no_grad()
    def step(self, closure: Closure, move: Callable[[torch.Tensor], None],
             frozen: torch.Tensor | None = None) -> torch.Tensor:
        """One ``optimizer.step(closure)`` for every row; returns the losses at the start."""
        with torch.enable_grad():
            loss, grad = closure()
        orig_loss = loss.clone()
        active = grad.abs().amax(1) > self.tol_grad
        if frozen is not None:
            active &= ~frozen
        evals = torch.ones_like(self.n_iter)
        inner = 0
        while bool(active.any()):
            inner += 1
            self.n_iter += active.long()
            fresh = active & (self.n_iter == 1)
            self._remember(grad, active & ~fresh)
            d = self._direction(grad, fresh)
            self.d = torch.where(active[:, None], d, self.d)
            self.prev_grad = torch.where(active[:, None], grad, self.prev_grad)
            prev_loss = loss
            first_t = torch.clamp(1.0 / grad.abs().sum(1), max=1.0) * self.lr
            self.t = torch.where(active, torch.where(fresh, first_t, torch.full_like(first_t, self.lr)), self.t)
            gtd = (grad * self.d).sum(1)
            active &= ~(gtd > -self.tol_change)
            if not bool(active.any()):
                break
            move(torch.where(active[:, None], self.d * self.t[:, None], torch.zeros_like(self.d)))
            if inner != self.max_iter:
                with torch.enable_grad():
                    new_loss, new_grad = closure()
                loss = torch.where(active, new_loss, loss)
                grad = torch.where(active[:, None], new_grad, grad)
                evals += active.long()
            done = torch.zeros_like(active) | (inner == self.max_iter)
            done |= evals >= self.max_eval
            done |= grad.abs().amax(1) <= self.tol_grad
            done |= (self.d * self.t[:, None]).abs().amax(1) <= self.tol_change
            done |= (loss - prev_loss).abs() < self.tol_change
            active &= ~done
        return orig_loss
