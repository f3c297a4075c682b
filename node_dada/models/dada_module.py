"""The LightningModule: feature extractor + learnable ``kappa`` + a DADA solver
(docs/design.md section 8).

The solver is the discrete iteration (``solver="discrete"``, gradient mode
``unrolled``) or the continuous ODE (``solver="ode"``, any torchdiffeq method or
``rkc``, any gradient mode). Both keep the reference's two phases in training:
a random no-grad lead-in (``n_pre ~ U{0..lead_in-1}`` iterations, or
``t_pre ~ U[0, 0.24 * lead_in)`` for the ODE), then ``train_iter`` iterations
(horizon ``0.24 * train_iter``) with gradient. Inference runs the whole
``lead_in + train_iter`` span.
"""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import lightning as L
import torch
import torch.nn as nn

from node_dada.data.pipeline import Batch
from node_dada.diffusion import (
    DEFAULT_LOG_KAPPA,
    DEFAULT_STEP,
    GRAD_MODES,
    discrete_dada,
    discrete_dada_two_phase,
    edge_coefficients,
    perona_malik,
    shift_positive,
    solve_ode,
)
from node_dada.diffusion.learning_free import learning_free_solver
from node_dada.diffusion.noise import check_source_noise, estimate_source_noise, fidelity_weights
from node_dada.errors import DataError, InputValueError, SolverError
from node_dada.libc import release_free_memory
from node_dada.metrics import ErrorSums
from node_dada.models.extractors import build_extractor
from node_dada.models.visuals import colourise, guide_to_rgb

__all__ = ["DADAModule", "INFERENCE_SOLVERS", "LOSS_WEIGHT"]

_log = logging.getLogger(__name__)

#: The reference scales the L1 loss by 10.
LOSS_WEIGHT = 10.0
#: Inference solvers of a trained model: ``"exact"``, its training solver (the discrete
#: iteration or the ODE's training scheme over the whole span), and ``"fast"``, the
#: learning-free RKC schedule (``learning_free_solver``) on the learned coefficients.
#: On the Middlebury test split the fast one stays within 1.2e-4 relative L2 of the
#: exact one for every shipped model (results/speed/trained/).
INFERENCE_SOLVERS = ("exact", "fast")
#: Side of the tiles in which inference computes the coefficients of images larger than
#: one tile plus its margins (``DADAModule.coefficients``); set a module's
#: ``inference_tile`` to ``None`` to compute them in one piece.
INFERENCE_TILE = 1024
#: Bound of the ``kappa_map`` log-gains.
_MAX_LOG_GAIN = 6.0
_STAGES = ("val", "test")


def _check_assumed_noise(value: object) -> float | str | None:
    try:
        return check_source_noise(value)
    except InputValueError as error:
        raise InputValueError(str(error).replace("source_noise:", "assume_noise:", 1)) from None


def _check_solver(solver: str) -> None:
    if solver not in INFERENCE_SOLVERS:
        raise InputValueError(f"solver: expected one of {INFERENCE_SOLVERS}, got {solver!r}")


def _tile_spans(padded: int, offset: int, size: int, tile: int, margin: int,
                device: torch.device) -> list[tuple[torch.Tensor, tuple[int, int], int]]:
    """Tiles along one axis of an image of ``size`` pixels that the extractor sees
    padded to ``padded`` (``offset`` pixels before it): for each tile, the image
    indices of its window (core plus margins; clamped indices = replicate padding),
    its core in image coordinates, and where the core starts inside the window."""
    spans = []
    for start in range(0, padded, tile):
        stop = min(start + tile, padded)
        core = (max(start - offset, 0), min(stop - offset, size))
        if core[0] >= core[1]:
            continue  # a tile of padding only
        first, last = max(start - margin, 0), min(stop + margin, padded)
        index = (torch.arange(first, last, device=device) - offset).clamp(0, size - 1)
        spans.append((index, core, core[0] + offset - first))
    return spans


class DADAModule(L.LightningModule):
    """Deep Anisotropic Diffusion, discrete or continuous.

    Args:
        extractor: ``"light"`` (CPU-sized), ``"resnet50"`` (the paper's), ``"resnet18"``,
            ``"resnet34"`` or ``"none"`` (learning-free: features = guide + I0, kappa fixed).
        guide_channels: channels of the (normalised) guide; the extractor sees one more.
        pretrained: local torchvision-format ImageNet weights for the ResNet encoders.
        solver: ``"discrete"`` or ``"ode"``.
        grad_mode: ``"unrolled"`` (discrete) or an ODE mode: ``"adjoint"`` (stable,
            default for ODE), ``"checkpointed"``, ``"direct"``, ``"adjoint_naive"``.
        method, step_size, rtol, atol, projection, max_nfe, solver_options: ODE settings
            (see ``node_dada.diffusion.solve_ode``).
        lead_in: iterations of the no-grad phase (inference runs all of them).
        train_iter: iterations with gradient.
        step: ``lambda`` of the discrete iteration; ODE horizons are ``step * iterations``.
        lr, weight_decay, lr_step_epochs, lr_gamma: Adam and StepLR.
        metric_aggregation: ``"pixel"`` (exact) or ``"batch"`` (the reference's mean of
            per-batch means), for comparison with published tables.
        image_every_n_val_steps: log image panels every N validation batches (0: never).
        depth_scale: divisor of the training data's depth unit, recorded so that
            ``node_dada.upsample(..., checkpoint=...)`` scales users' depth the same way.
        max_nonfinite_steps: training steps whose loss or gradient is not finite that are
            skipped (no parameter update; logged with the solver, method and lead-in that
            produced them) before training stops with a ``SolverError``; 0 stops at the
            first. The last good checkpoint is kept either way.
        residual: features are the extractor's output plus ``cat(guide, I0)`` (the
            learning-free ones), so training starts from learning-free DADA.
        kappa_map: the extractor predicts a local edge sensitivity instead of features:
            two log-gains ``a_v, a_h`` per pixel scale the learning-free edge strengths,
            ``cv = g(exp(a_v) * mean_k |grad_v cat(guide, I0)|, kappa)`` (a spatially
            varying ``kappa``, one per direction). The gains start at 0 (learning-free
            DADA) and need not be sharp: the edges' positions come from the guide, the
            network decides which of them are depth edges (docs/training.md).
        lead_in_solver: how the ODE's no-gradient lead-in is integrated: ``"training"``
            (the training solver, e.g. Euler h = 0.24) or ``"rkc"`` (the growing-step
            RKC schedule of learning-free inference, about 10x fewer evaluations for
            the same state within 1e-3 relative L2). The lead-in only draws a starting
            point for the horizon with gradient, so its scheme does not change what is
            learned; ``"rkc"`` makes ODE training as fast as discrete training.
        init_from: start from another model's weights (a shipped model's name, a
            Lightning checkpoint or an exported file) instead of the initial ones:
            fine-tuning to another scale, sensor or dataset. Its extractor, guide
            channels and head (``kappa_map``/``residual``) must be this model's; solver,
            scale and training settings may differ. Only the starting point: a
            checkpoint of this run carries its own weights, and a resumed run restores
            them over these.
        assume_noise: the noise the model assumes in its sources, which sets the
            consistency it trains and evaluates with, as
            ``node_dada.upsample(source_noise=...)``: ``None`` (default) the exact
            adjustment; a noise standard deviation in the source's unit (mm for the
            project's datasets); ``"auto"`` estimated from each source and guide. With
            noisy training data (``data.source_noise``, the noise added) this trains a
            noise-aware model; needs ``solver: discrete``. At inference through
            ``upsample`` the caller's ``source_noise`` decides (pass ``"auto"`` to such
            a model).
    """

    def __init__(
        self,
        *,
        extractor: str = "light",
        guide_channels: int = 3,
        pretrained: str | None = None,
        solver: str = "discrete",
        grad_mode: str = "unrolled",
        method: str = "euler",
        step_size: float = DEFAULT_STEP,
        rtol: float | None = None,
        atol: float | None = None,
        projection: str = "multiplicative",
        max_nfe: int | None = None,
        solver_options: dict[str, Any] | None = None,
        lead_in: int = 8000,
        train_iter: int = 1024,
        step: float = DEFAULT_STEP,
        lr: float = 1e-4,
        weight_decay: float = 1e-5,
        lr_step_epochs: int = 10,
        lr_gamma: float = 0.9,
        metric_aggregation: str = "pixel",
        image_every_n_val_steps: int = 10,
        depth_scale: float = 1122.7,
        max_nonfinite_steps: int = 0,
        residual: bool = False,
        kappa_map: bool = False,
        lead_in_solver: str = "training",
        init_from: str | None = None,
        assume_noise: float | str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if solver not in ("discrete", "ode"):
            raise InputValueError(f"solver: expected 'discrete' or 'ode', got {solver!r}")
        if solver == "discrete" and grad_mode != "unrolled":
            raise InputValueError(
                f"grad_mode: the discrete solver trains by 'unrolled', got {grad_mode!r}; "
                "use solver='ode' for the continuous gradient modes"
            )
        if solver == "ode" and grad_mode not in GRAD_MODES:
            raise InputValueError(f"grad_mode: expected one of {GRAD_MODES}, got {grad_mode!r}")
        if metric_aggregation not in ("pixel", "batch"):
            raise InputValueError(
                f"metric_aggregation: expected 'pixel' or 'batch', got {metric_aggregation!r}"
            )
        self.learning_free = extractor == "none"
        if (residual or kappa_map) and self.learning_free:
            raise InputValueError(
                "residual, kappa_map: need a learned extractor, got extractor='none'")
        if residual and kappa_map:
            raise InputValueError("residual, kappa_map: choose one of the two, got both")
        features = ({"out_channels": guide_channels + 1} if residual
                    else {"out_channels": 2} if kappa_map else {})
        self.extractor = build_extractor(extractor, in_channels=guide_channels + 1,
                                         pretrained=pretrained, **features)
        if residual or kappa_map:
            # zero head: training starts exactly from the learning-free coefficients
            nn.init.zeros_(self.extractor.head.weight)
            if self.extractor.head.bias is not None:
                nn.init.zeros_(self.extractor.head.bias)
        self.log_kappa = nn.Parameter(torch.tensor(DEFAULT_LOG_KAPPA),
                                      requires_grad=not self.learning_free)
        if init_from is not None:
            self._start_from(init_from)
        if lead_in_solver not in ("training", "rkc"):
            raise InputValueError(
                f"lead_in_solver: expected 'training' or 'rkc', got {lead_in_solver!r}")
        if lead_in_solver == "rkc" and solver != "ode":
            raise InputValueError(
                "lead_in_solver: 'rkc' integrates the ODE's lead-in; the discrete solver's "
                "lead-in is its own iteration (fused already), leave it at 'training'")
        if _check_assumed_noise(assume_noise) is not None and solver != "discrete":
            raise InputValueError(
                f"assume_noise: training with the relaxed consistency needs solver "
                f"'discrete' (the unrolled iteration), got solver={solver!r}")
        if max_nonfinite_steps < 0:
            raise InputValueError(
                f"max_nonfinite_steps: expected an integer >= 0, got {max_nonfinite_steps}"
            )
        self.inference_tile: int | None = INFERENCE_TILE
        self._rng = random.Random(0)
        self._nonfinite_steps = 0
        self._drop_gradients = False
        self._last_aux: dict[str, Any] = {}
        self._last_info: Any = None
        self._sums: dict[str, ErrorSums] = {}

    def _start_from(self, source: str) -> None:
        """Load the weights of ``init_from`` after checking that they fit this model."""
        from node_dada.models.registry import resolve_checkpoint
        from node_dada.models.weights import load_checkpoint_safely

        path = resolve_checkpoint(source)
        content = load_checkpoint_safely(path)
        if "state_dict" not in content or "hyper_parameters" not in content:
            raise DataError(
                f"init_from: {path} lacks 'state_dict' and 'hyper_parameters'; expected a "
                "node-dada model (a shipped name, a Lightning checkpoint or an exported file)")
        theirs = dict(content["hyper_parameters"])
        for key, default in (("extractor", "light"), ("guide_channels", 3),
                             ("kappa_map", False), ("residual", False)):
            if theirs.get(key, default) != self.hparams[key]:
                raise InputValueError(
                    f"init_from: {source!r} has {key}={theirs.get(key, default)!r}, this "
                    f"model {key}={self.hparams[key]!r}; set --model.{key} to match it or "
                    "start from a model with the same architecture")
        self.load_state_dict(content["state_dict"], strict=True)

    # ----------------------------------------------------------------- forward
    def coefficients(self, guide: torch.Tensor, depth0: torch.Tensor, *,
                     tile: int | None = None) -> tuple[torch.Tensor, ...]:
        """``cv, ch`` from the guide and the initial estimate (docs/design.md section 2).

        ``residual``: the features are ``cat(guide, depth0)`` (those of learning-free
        DADA) plus the extractor's output, whose head starts at zero, so training
        starts from the learning-free coefficients and learns corrections (suppress
        texture edges of the guide, add depth edges it lacks).

        ``tile``: compute them in tiles of ``tile`` pixels a side (a multiple of the
        extractor's stride), each with a margin that covers the extractor's receptive
        field, when the image is larger than one tile with its margins: memory then
        grows with the tile, not the image, and the result equals the untiled one up
        to float round-off (the convolutions see the same inputs). Inference only:
        batch normalisation must be in eval mode. Extractors with the paper's x2 input
        upsampling (``resnet*``) always run untiled."""
        if tile is not None and not self.learning_free:
            tiled = self._tiled_coefficients(guide, depth0, tile)
            if tiled is not None:
                return tiled
        return self._coefficients(guide, depth0, depth0.mean(dim=(1, 2, 3), keepdim=True))

    def _coefficients(self, guide, depth0, depth_mean):
        if self.learning_free:
            features = torch.cat([guide, depth0], dim=1)
        elif self.hparams.get("kappa_map", False):
            return self._mapped_coefficients(guide, depth0, depth_mean)
        else:
            features = self.extractor(torch.cat([guide, depth0 - depth_mean], dim=1))
            if self.hparams.residual:
                features = features + torch.cat([guide, depth0], dim=1)
        return edge_coefficients(features, self.log_kappa.exp())

    def _tiled_coefficients(self, guide, depth0, tile: int):
        """:meth:`coefficients` tile by tile, or ``None`` when one tile covers the image.

        Tiles are laid on the grid the untiled extractor sees (the image replicate-padded
        to a multiple of its stride, split evenly between the sides), each read with a
        margin of the receptive radius rounded up to the stride, the padding done by
        clamping indices, so every convolution of a tile's core sees what it sees
        untiled; only the cores are kept."""
        if self.training:
            raise InputValueError("tile: tiled coefficients are for inference (eval mode)")
        if self.extractor.upsample_input:
            # the paper's recipe pads the x2-upsampled input, a grid no input-pixel
            # window can reproduce exactly: those (GPU) extractors run untiled
            return None
        stride = self.extractor.stride
        if tile < stride or tile % stride:
            raise InputValueError(f"tile: expected a multiple of {stride}, got {tile}")
        margin = -(-self.extractor.receptive_radius // stride) * stride
        height, width = depth0.shape[-2:]
        padded = [max(-(-n // stride), 2) * stride for n in (height, width)]
        if all(n <= tile + 2 * margin for n in padded):
            return None
        offsets = [(p - n) // 2 for p, n in zip(padded, (height, width), strict=True)]
        mean = depth0.mean(dim=(1, 2, 3), keepdim=True)
        cv = depth0.new_empty(depth0.shape[:2] + (height - 1, width))
        ch = depth0.new_empty(depth0.shape[:2] + (height, width - 1))
        rows = _tile_spans(padded[0], offsets[0], height, tile, margin, guide.device)
        cols = _tile_spans(padded[1], offsets[1], width, tile, margin, guide.device)
        for (r_index, r_core, r_local) in rows:
            for (c_index, c_core, c_local) in cols:
                window = (slice(None), slice(None), r_index[:, None], c_index[None, :])
                cv_w, ch_w = self._coefficients(guide[window], depth0[window], mean)
                r0, r1 = r_core
                c0, c1 = c_core
                v1, h1 = min(r1, height - 1), min(c1, width - 1)
                cv[..., r0:v1, c0:c1] = cv_w[..., r_local:r_local + v1 - r0,
                                             c_local:c_local + c1 - c0]
                ch[..., r0:r1, c0:h1] = ch_w[..., r_local:r_local + r1 - r0,
                                             c_local:c_local + h1 - c0]
                del cv_w, ch_w
                release_free_memory()  # a tile's temporaries, before the next tile's
        return cv, ch

    def _mapped_coefficients(self, guide: torch.Tensor, depth0: torch.Tensor,
                             depth_mean: torch.Tensor):
        """``kappa_map``: learning-free edge strengths times learned local gains."""
        gains = self.extractor(torch.cat([guide, depth0 - depth_mean], dim=1))
        # bounded log-gains (|a| < 6, a factor of 400 either way): no overflow early on
        gains = _MAX_LOG_GAIN * torch.tanh(gains / _MAX_LOG_GAIN)
        features = torch.cat([guide, depth0], dim=1)
        strength_v = (features[:, :, 1:] - features[:, :, :-1]).abs().mean(dim=1, keepdim=True)
        strength_h = (features[..., 1:] - features[..., :-1]).abs().mean(dim=1, keepdim=True)
        gain_v = 0.5 * (gains[:, :1, 1:] + gains[:, :1, :-1])
        gain_h = 0.5 * (gains[:, 1:, :, 1:] + gains[:, 1:, :, :-1])
        kappa = self.log_kappa.exp()
        return (perona_malik(strength_v * gain_v.exp(), kappa),
                perona_malik(strength_h * gain_h.exp(), kappa))

    def forward(self, batch: Batch, *, train: bool = False,
                solver: str = "exact") -> tuple[torch.Tensor, dict]:
        """Predict scaled depth (B, 1, H, W); ``train`` draws the random lead-in.

        ``solver`` (inference only): ``"exact"`` runs the training solver over the whole
        ``lead_in + train_iter`` span; ``"fast"`` integrates the same coefficients with
        the growing-step RKC schedule of learning-free inference (``INFERENCE_SOLVERS``).
        """
        _check_solver(solver)
        source, depth0, shift = shift_positive(batch.source, batch.depth0, batch.mask_lr)
        cv, ch = self.coefficients(batch.guide, depth0,
                                   tile=None if train else self.inference_tile)
        return self.diffuse(depth0, cv, ch, source, batch.mask_lr, shift, train=train,
                            solver=solver, fidelity=self.batch_fidelity(batch))

    def batch_fidelity(self, batch: Batch) -> torch.Tensor | None:
        """Per-block weights of the relaxed consistency for ``batch`` (``assume_noise``),
        or None for the exact one; no gradient flows through them."""
        noise = self.hparams.get("assume_noise")
        if noise is None or noise == 0:
            return None
        with torch.no_grad():
            if noise == "auto":
                sigma = estimate_source_noise(batch.source, batch.mask_lr, batch.guide)
            else:
                sigma = float(noise) / self.hparams.depth_scale
            return fidelity_weights(sigma, batch.source, batch.mask_lr)

    def diffuse(self, depth0, cv, ch, source, mask, shift: float = 0.0, *,
                train: bool = False, solver: str = "exact",
                fidelity: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """The second half of :meth:`forward`: the diffusion of ``depth0`` (shifted
        positive by ``shift``, see ``shift_positive``) with the coefficients ``cv, ch``;
        returns the depth with the shift undone, and the solve's details.

        ``fidelity``: per-block weights of the relaxed consistency for a noisy source
        (``node_dada.diffusion.noise``); the exact solver is then the discrete iteration
        with the soft adjustment (ODE models too: it splits the relaxed field exactly
        into diffusion and fidelity, stable for any weight)."""
        _check_solver(solver)
        hp = self.hparams
        if fidelity is not None and train and hp.solver != "discrete":
            raise InputValueError("fidelity: training with the relaxed consistency is "
                                  "supported for solver 'discrete' (the unrolled iteration)")
        if solver == "fast" and not train:
            depth, info = solve_ode(depth0, cv, ch, source, mask, self.horizon,
                                    projection=hp.projection, fidelity=fidelity,
                                    **learning_free_solver())
            info = {"nfe_forward": info.nfe_forward, "solver_time_s": info.wall_time_s}
        elif hp.solver == "discrete" or fidelity is not None:
            if train:
                depth, lead = discrete_dada_two_phase(
                    depth0, cv, ch, source, mask, num_pre=hp.lead_in,
                    num_train=hp.train_iter, step=hp.step, randomize_pre=True, rng=self._rng,
                    fidelity=fidelity)
                info = {"lead_in": lead, "nfe_forward": lead + hp.train_iter}
            else:
                total = hp.lead_in + (0 if self.learning_free else hp.train_iter)
                depth = discrete_dada(depth0, cv, ch, source, mask, total, hp.step,
                                      fidelity=fidelity)
                info = {"nfe_forward": total}
        else:
            depth, info = self._forward_ode(depth0, cv, ch, source, mask, train)
        if shift:
            depth = depth - shift
        return depth, {"cv": cv, "ch": ch, **info}

    @property
    def horizon(self) -> float:
        """Inference horizon ``step * (lead_in + train_iter)`` (``lead_in`` alone for the
        learning-free module): what the exact solvers integrate, as ``T`` of the ODE."""
        hp = self.hparams
        return hp.step * (hp.lead_in + (0 if self.learning_free else hp.train_iter))

    def _solve(self, depth0, cv, ch, source, mask, t_end: float, grad_mode: str):
        hp = self.hparams
        return solve_ode(depth0, cv, ch, source, mask, t_end, method=hp.method,
                         step_size=hp.step_size, rtol=hp.rtol, atol=hp.atol,
                         projection=hp.projection, grad_mode=grad_mode, max_nfe=hp.max_nfe,
                         options=hp.solver_options)

    def _forward_ode(self, depth0, cv, ch, source, mask, train: bool):
        hp = self.hparams
        t_pre = hp.step * hp.lead_in
        t_train = 0.0 if self.learning_free else hp.step * hp.train_iter
        if not train:
            depth, info = self._solve(depth0, cv, ch, source, mask, t_pre + t_train, "direct")
            return depth, {"nfe_forward": info.nfe_forward, "solver_time_s": info.wall_time_s}
        lead = self._rng.uniform(0.0, t_pre) if t_pre > 0 else 0.0
        start = depth0
        nfe = 0
        if lead > 0:
            with torch.no_grad():
                if hp.get("lead_in_solver", "training") == "rkc":
                    start, pre_info = solve_ode(
                        depth0, cv.detach(), ch.detach(), source, mask, lead,
                        projection=hp.projection, **learning_free_solver())
                else:
                    start, pre_info = self._solve(depth0, cv.detach(), ch.detach(), source,
                                                  mask, lead, "direct")
            nfe = pre_info.nfe_forward
        depth, info = self._solve(start, cv, ch, source, mask, t_train, hp.grad_mode)
        self._last_info = info
        return depth, {"lead_in": lead, "nfe_forward": nfe + info.nfe_forward,
                       "solver_time_s": info.wall_time_s}

    # ---------------------------------------------------------------- training
    @staticmethod
    def loss(prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
        """L1 over valid HR pixels (scaled depth), times 10 as in the reference."""
        valid = batch.mask_hr
        if not valid.any():
            return prediction.sum() * 0.0
        return LOSS_WEIGHT * (prediction[valid] - batch.target[valid]).abs().mean()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        self._last_aux = {}
        try:
            prediction, aux = self(batch, train=True)
        except SolverError as error:  # e.g. an adaptive solver over its max_nfe budget
            raise SolverError(f"{error} (training, {self._nonfinite_origin()})") from None
        self._last_aux = {"lead_in": aux.get("lead_in")}
        loss = self.loss(prediction, batch)
        if not torch.isfinite(loss):
            self._skip_nonfinite(f"training loss ({float(loss)})")
            if self.trainer.world_size > 1:
                # Every process must run backward (DDP all-reduces the gradients): the NaN
                # reaches all of them and on_before_optimizer_step drops it everywhere.
                self._drop_gradients = True
                return loss
            return None  # Lightning then skips backward and the parameter update
        size = len(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/kappa", self.log_kappa.exp().detach(), batch_size=size)
        self.log("train/nfe_forward", float(aux["nfe_forward"]), batch_size=size)
        if "solver_time_s" in aux:
            self.log("train/solver_time_s", aux["solver_time_s"], batch_size=size)
        return loss

    def on_after_backward(self) -> None:
        info = self._last_info
        if info is not None:
            self.log("train/nfe_backward", float(info.nfe_backward))
            self.log("train/backward_time_s", info.backward_time_s)
            self._last_info = None

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # A finite loss can still give a NaN/inf gradient (e.g. a diverging adjoint):
        # drop every gradient, so that Adam leaves all parameters as they are.
        if not self._drop_gradients:
            bad = next((name for name, p in self.named_parameters()
                        if p.grad is not None and not torch.isfinite(p.grad).all()), None)
            if bad is None:
                return
            self._skip_nonfinite(f"gradient of {bad}")
        self._drop_gradients = False
        for group in optimizer.param_groups:
            for parameter in group["params"]:
                parameter.grad = None

    def _nonfinite_origin(self) -> str:
        """Where a training step ran: step, solver, method, lead-in and horizon."""
        hp = self.hparams
        lead = self._last_aux.get("lead_in")
        if hp.solver == "discrete":
            lead = "not drawn yet" if lead is None else lead
            return (f"step {self.global_step}, discrete solver (unrolled), lead-in {lead} of "
                    f"{hp.lead_in} iterations, then {hp.train_iter} with gradient")
        lead_text = "not drawn yet" if lead is None else f"t={float(lead):.4g}"
        return (f"step {self.global_step}, ode solver method {hp.method!r} (step_size "
                f"{hp.step_size}, rtol {hp.rtol}, atol {hp.atol}), grad_mode {hp.grad_mode!r}, "
                f"lead-in {lead_text} of T_pre={hp.step * hp.lead_in:.4g}, then horizon "
                f"T={hp.step * hp.train_iter:.4g} with gradient")

    def _skip_nonfinite(self, what: str) -> None:
        """Count a non-finite step; raise once more than ``max_nonfinite_steps`` were seen."""
        self._nonfinite_steps += 1
        limit = self.hparams.get("max_nonfinite_steps", 0)
        origin = self._nonfinite_origin()
        self.log("train/nonfinite_steps", float(self._nonfinite_steps))
        if self._nonfinite_steps > limit:
            raise SolverError(
                f"non-finite {what} at {origin}; {self._nonfinite_steps} non-finite step(s), "
                f"more than max_nonfinite_steps={limit}: training stops and the last good "
                "checkpoint is kept"
            )
        _log.warning("non-finite %s at %s: step skipped, no parameter update (%d of at most "
                     "%d)", what, origin, self._nonfinite_steps, limit)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming must draw the same lead-ins as the uninterrupted run (plain ints and
        # lists keep the checkpoint loadable with weights_only=True).
        version, internal, gauss = self._rng.getstate()
        checkpoint["node_dada"] = {
            "lead_in_rng": {"version": version, "internal": list(internal), "gauss": gauss},
            "nonfinite_steps": self._nonfinite_steps,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("node_dada")
        if not state:
            return
        rng = state["lead_in_rng"]
        self._rng.setstate((rng["version"], tuple(rng["internal"]), rng["gauss"]))
        self._nonfinite_steps = int(state.get("nonfinite_steps", 0))

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if not params:  # learning-free: nothing to train, keep Lightning's loop well-formed
            params = [nn.Parameter(torch.zeros(()))]
        optimizer = torch.optim.Adam(params, lr=hp.lr, weight_decay=hp.weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=hp.lr_step_epochs,
                                                    gamma=hp.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    # -------------------------------------------------------------- evaluation
    def _evaluate(self, batch: Batch, batch_idx: int, stage: str) -> torch.Tensor:
        prediction, aux = self(batch)
        loss = self.loss(prediction, batch)
        self.log(f"{stage}/loss", loss, batch_size=len(batch), sync_dist=True)
        self._accumulate(stage, batch.physical(prediction), batch.physical(batch.target),
                         batch.mask_hr, batch.unit)
        every = self.hparams.image_every_n_val_steps
        if stage == "val" and every and batch_idx % every == 0:
            self._log_panels(batch, prediction, aux, batch_idx)
        return prediction

    def _accumulate(self, stage: str, prediction, target, valid, unit: str) -> None:
        # Physical units: mm -> cm (metrics in cm, docs/design.md section 7); px stays px.
        sums = self._sums.setdefault(stage, ErrorSums(device=prediction.device))
        if sums.add(prediction, target, valid, factor=0.1 if unit == "mm" else 1.0):
            self._units = "cm" if unit == "mm" else unit

    def _log_epoch_metrics(self, stage: str) -> None:
        sums = self._sums.pop(stage, None)
        if sums is None or sums.batches == 0:
            return
        total = ErrorSums(tensor=self.trainer.strategy.reduce(sums.tensor.clone(),
                                                              reduce_op="sum"))
        errors = total.errors(self.hparams.metric_aggregation)
        unit = getattr(self, "_units", "cm")
        self.log_dict({f"{stage}/mae_{unit}": errors.mae_cm, f"{stage}/mse_{unit}2": errors.mse_cm2,
                       f"{stage}/rmse_{unit}": errors.rmse_cm}, prog_bar=stage == "val")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, Any]:
        prediction, _ = self(batch)
        return {"name": batch.name, "depth": batch.physical(prediction).cpu(),
                "unit": batch.unit}

    # ------------------------------------------------------------- TensorBoard
    def _log_panels(self, batch: Batch, prediction, aux: dict, batch_idx: int) -> None:
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        if self.trainer.global_rank != 0:
            return
        step = self.global_step
        tag = f"val_{batch_idx}"
        target = batch.physical(batch.target)[0, 0]
        valid = batch.mask_hr[0, 0]
        predicted = batch.physical(prediction)[0, 0].detach()
        finite = target[valid]
        low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
        error = (predicted - target).abs().masked_fill(~valid, 0)
        panels = {
            "guide": guide_to_rgb(batch.guide[0]),
            "prediction": colourise(predicted, low, high),
            "ground_truth": colourise(target.masked_fill(~valid, math.nan), low, high),
            "error": colourise(error, 0.0, max(float(error.max()), 1e-6), cmap="magma"),
            "cv": colourise(aux["cv"][0, 0].detach(), 0.0, 1.0, cmap="gray"),
            "ch": colourise(aux["ch"][0, 0].detach(), 0.0, 1.0, cmap="gray"),
        }
        for name, image in panels.items():
            experiment.add_image(f"{tag}/{name}", image, step, dataformats="HWC")
        experiment.add_histogram(f"{tag}/cv_hist", aux["cv"].detach().flatten().cpu(), step)
        experiment.add_histogram(f"{tag}/ch_hist", aux["ch"].detach().flatten().cpu(), step)
