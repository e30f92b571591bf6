"""The Recurrent Attention Model (Mnih, Heess, Graves, Kavukcuoglu, NIPS 2014): selective attention.

The model never looks at the whole image. At each of ``glimpses`` steps a glimpse sensor reads ``scales``
square patches centred on the current location (the smallest ``glimpse_size`` pixels a side, each next one
twice as large, all averaged down to ``glimpse_size``); a glimpse network merges "what" (the patches) and
"where" (the location); a recurrent core (ReLU) updates its state; a location network proposes the next
location. The classifier reads the last state. Parameters and per-image compute depend on the glimpse size,
the scales and the glimpse count, not on the input resolution.

Locations are (x, y) in [-1, 1]^2, (0, 0) the image centre (the first glimpse looks there). While training the
next location is sampled from a Gaussian with fixed std around the location network's mean and the sample is
detached: the classifier and core learn by back-propagation of cross-entropy, the location network by
REINFORCE (reward 1 when the final prediction is right) with a learned baseline (:func:`objective`). At
evaluation the location is the mean: the model is deterministic, and it exports to ONNX with the loop unrolled.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgebench.losses import CrossEntropy, Loss, Sum
from edgebench.config import RAM_DEFAULTS  # the one source of the defaults (conf/model/ram.yaml repeats them, tested)


class GlimpseSensor(nn.Module):
    """``scales`` patches of ``size * 2**s`` pixels centred on ``loc``, each averaged down to ``size`` x ``size``.

    Sampling is bilinear (``grid_sample``, zeros outside the image): a location whose patch falls on pixel
    boundaries reads the pixels exactly. Pixel ``p`` (0-based) of an axis of ``n`` pixels has its centre at
    ``(2p + 1) / n - 1``, so the patch centred on ``loc`` covers pixels ``c - (P-1)/2 .. c + (P-1)/2`` with
    ``c = ((loc + 1) n - 1) / 2``. The cost depends on the patch sizes only, never on the image size.
    """

    def __init__(self, size: int, scales: int):
        super().__init__()
        self.size, self.scales = size, scales

    def forward(self, x: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        out = []
        for s in range(self.scales):
            side = self.size * 2 ** s
            off = torch.arange(side, dtype=x.dtype, device=x.device) - (side - 1) / 2  # pixels from the centre
            gx = loc[:, :1] + 2 * off / w  # (b, side): x (width) coordinate of each sample column
            gy = loc[:, 1:] + 2 * off / h
            grid = torch.stack([gx[:, None, :].expand(b, side, side), gy[:, :, None].expand(b, side, side)], dim=-1)
            patch = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            out.append(F.avg_pool2d(patch, 2 ** s) if s else patch)
        return torch.cat(out, dim=1)  # (b, scales * channels, size, size)

    def extra_repr(self) -> str:
        return f"size={self.size}, scales={self.scales}"


class RecurrentAttention(nn.Module):
    """RAM for ``input_shape`` (C, H, W) images: only the glimpse network's input depends on C, nothing on H, W.

    After each forward pass ``self.trace`` holds ``locations`` (B, glimpses, 2: where each glimpse looked),
    ``log_pi`` (B, glimpses - 1: log-probability of each sampled location; training only) and ``baseline``
    (B, glimpses - 1: the predicted reward), which :func:`objective` reads.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int,
                 glimpse_size: int = RAM_DEFAULTS["glimpse_size"], scales: int = RAM_DEFAULTS["scales"],
                 glimpses: int = RAM_DEFAULTS["glimpses"], loc_std: float = RAM_DEFAULTS["loc_std"],
                 hidden: int = RAM_DEFAULTS["hidden"], glimpse_hidden: int = 128):
        super().__init__()
        c = input_shape[0]
        self.glimpses, self.loc_std, self.hidden = glimpses, loc_std, hidden
        self.sensor = GlimpseSensor(glimpse_size, scales)
        self.what = nn.Linear(scales * c * glimpse_size ** 2, glimpse_hidden)  # h_g
        self.where = nn.Linear(2, glimpse_hidden)  # h_l
        self.glimpse_what = nn.Linear(glimpse_hidden, hidden)  # g = relu(W_g h_g + W_l h_l)
        self.glimpse_where = nn.Linear(glimpse_hidden, hidden)
        self.core_in = nn.Linear(hidden, hidden)  # h_t = relu(W_i g_t + W_h h_{t-1})
        self.core_rec = nn.Linear(hidden, hidden)
        self.locator = nn.Linear(hidden, 2)  # mean of the next location, tanh to [-1, 1]
        self.baseline = nn.Linear(hidden, 1)
        self.classifier = nn.Linear(hidden, num_classes)
        self.trace: dict[str, torch.Tensor] = {}

    def glimpse(self, x: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
        patches = self.sensor(x, loc).flatten(1)
        return F.relu(self.glimpse_what(F.relu(self.what(patches))) + self.glimpse_where(F.relu(self.where(loc))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        loc = x.new_zeros(b, 2)  # the first glimpse looks at the centre
        h = x.new_zeros(b, self.hidden)
        locations, log_pi, baseline = [loc], [], []
        for t in range(self.glimpses):
            g = self.glimpse(x, loc)
            h = F.relu(self.core_in(g) + self.core_rec(h))
            if t == self.glimpses - 1:
                break
            state = h.detach()  # the location and baseline networks learn from REINFORCE / their own loss only
            mean = torch.tanh(self.locator(state))
            if self.training:
                sample = (mean + self.loc_std * torch.randn_like(mean)).detach()  # no gradient through the sample
                log_pi.append(torch.distributions.Normal(mean, self.loc_std).log_prob(sample).sum(1))
                loc = sample.clamp(-1.0, 1.0)
            else:
                loc = mean
            baseline.append(self.baseline(state).squeeze(1))
            locations.append(loc)
        self.trace = {"locations": torch.stack(locations, 1),
                      "log_pi": torch.stack(log_pi, 1) if log_pi else x.new_zeros(b, 0),
                      "baseline": torch.stack(baseline, 1) if baseline else x.new_zeros(b, 0)}
        return self.classifier(h)

    def objective(self) -> Loss:
        """This model's own training objective (:func:`objective`)."""
        return objective()

    @torch.no_grad()
    def report_plots(self, x: torch.Tensor, y: torch.Tensor, classes: list[str] | None = None) -> dict:
        """Where it looks on the images ``x`` (evaluation mode: the deterministic path), as plot data for
        :func:`edgebench.report.method_plots.glimpse_paths`, keyed by the artifact path."""
        from edgebench.methods.base import Plot

        was = self.training
        self.eval()
        try:  # in the model's own dtype (fp16 after a half-precision step; the plot keeps the float images)
            pred = self(x.to(next(self.parameters()).dtype)).argmax(1)
        finally:
            self.train(was)
        return {"attention/glimpses.png": Plot("glimpse_paths", {
            "images": x[:, 0].tolist(), "locations": self.trace["locations"].tolist(),
            "labels": y.tolist(), "predictions": pred.tolist(), "glimpse_size": self.sensor.size,
            "scales": self.sensor.scales, "classes": classes})}


class Reinforce(Loss):
    """REINFORCE for the location policy: ``-sum_t log pi(l_t) (R - b_t)``, R = 1 for a right final prediction,
    b_t the learned baseline (detached here: it only lowers the variance)."""

    def forward(self, net, x, logits, y):  # noqa: ARG002 - the Loss signature
        trace = _ram(net).trace
        if trace["log_pi"].numel() == 0:  # evaluation mode, or a single glimpse: nothing was sampled
            return logits.new_zeros(())
        reward = (logits.detach().argmax(1) == y).float()[:, None]
        return -(trace["log_pi"] * (reward - trace["baseline"].detach())).sum(1).mean()


class BaselineMSE(Loss):
    """The baseline network's regression of the reward: mean squared error."""

    def forward(self, net, x, logits, y):  # noqa: ARG002 - the Loss signature
        trace = _ram(net).trace
        if trace["baseline"].numel() == 0:
            return logits.new_zeros(())
        reward = (logits.detach().argmax(1) == y).float()[:, None]
        return F.mse_loss(trace["baseline"], reward.expand_as(trace["baseline"]))


def _ram(net: nn.Module) -> RecurrentAttention:
    for m in net.modules():  # the RAM itself, or the RAM inside a wrapper (an input adapter, a QAT copy)
        if isinstance(m, RecurrentAttention):
            return m
    raise TypeError(f"the RAM's objective needs a RecurrentAttention model, got {type(net).__name__}")


def objective() -> Loss:
    """Mnih et al.'s hybrid loss: cross-entropy for the classifier and core, REINFORCE for the locations, and the
    baseline's squared error."""
    return Sum(CrossEntropy(), Reinforce(), BaselineMSE())
