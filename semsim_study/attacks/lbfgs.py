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
        # The history as one ring over age shared by all rows: every row's age-j entry sits in
        # slot (newest - j) % history, so the recursion reads each entry as a plain (B, P) view.
        self.ys_hist = torch.zeros(history_size, batch, size, **z)  # y (gradient change) per slot
        self.ss_hist = torch.zeros(history_size, batch, size, **z)  # s (step) per slot
        self.ro_hist = torch.zeros(history_size, batch, **z)
        self.count = torch.zeros(batch, dtype=torch.long, device=device)  # entries used (<= history)
        self.newest = history_size - 1  # slot of the newest entries (the ring may start anywhere)

    def _direction(self, grad: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
        """The L-BFGS direction per row; rows in ``fresh`` (first iteration) take -grad.

        The recursion runs over ages with every entry a view of the ring, not a per-row gather
        (which was most of its time), and with the same float operations as before: each
        product is materialised before its row sum. Entry j is masked by ``valid[j]`` only where
        some row holds fewer than j + 1 entries; below every row's count the mask is 1.0, and
        multiplying by it changes no bit."""
        q = -grad
        depth = int(self.count.max()) if len(self.count) else 0
        full = int(self.count.min()) if len(self.count) else 0
        valid = (torch.arange(depth, device=grad.device)[:, None] < self.count).to(grad.dtype).unbind(0)
        slots = [(self.newest - j) % self.history for j in range(depth)]  # newest to oldest
        ss, ys, ro = self.ss_hist.unbind(0), self.ys_hist.unbind(0), self.ro_hist.unbind(0)
        alphas = []
        for j, slot in enumerate(slots):
            a = (ss[slot] * q).sum(1) * ro[slot]
            if j >= full:
                a = a * valid[j]
            q.sub_(a.unsqueeze(1) * ys[slot])
            alphas.append(a)
        r = q * self.h_diag.unsqueeze(1)
        for j in reversed(range(depth)):  # oldest to newest
            slot = slots[j]
            b = (ys[slot] * r).sum(1) * ro[slot]
            c = alphas[j] - b
            if j >= full:
                c = c * valid[j]
            r.add_(c.unsqueeze(1) * ss[slot])
        return torch.where(fresh[:, None], -grad, r)

    def _age(self, rows: torch.Tensor, shift: int) -> None:
        """Rotate the history of ``rows`` by ``shift`` slots, so their entries keep their ages
        when the ring's newest slot moves (+1) or grow one older while it stays (-1). Rows
        remember at different times; rotating the fewer rows keeps the ring shared."""
        for hist in (self.ys_hist, self.ss_hist, self.ro_hist):
            hist[:, rows] = torch.roll(hist[:, rows], shift, 0)

    def _remember(self, grad: torch.Tensor, rows: torch.Tensor) -> None:
        y = grad - self.prev_grad
        s = self.d * self.t[:, None]
        ys = (y * s).sum(1)
        keep = rows & (ys > 1e-10)
        kept = int(keep.sum())
        if kept:
            if 2 * kept >= len(keep):  # the ring moves on; the rows that do not remember stay put
                if kept < len(keep):
                    self._age(~keep, 1)
                self.newest = (self.newest + 1) % self.history
            else:  # the ring stays; the fewer rows that remember age by one
                self._age(keep, -1)
            slot = self.newest  # keeping rows' oldest entry, or an unused slot, is overwritten
            self.ys_hist[slot, keep] = y[keep]
            self.ss_hist[slot, keep] = s[keep]
            self.ro_hist[slot, keep] = 1.0 / ys[keep]
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
