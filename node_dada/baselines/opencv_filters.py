"""Classic guided filters from OpenCV's ``ximgproc``, each applied to the masked
bicubic estimate (which fills invalid source pixels): the guided filter, joint
bilateral filtering, the fast global smoother and the joint weighted median.

OpenCV works per image on CPU numpy arrays. The wrappers check what OpenCV
would reject (guide dtype and channel count) or silently misread (non-finite
values, a guide outside 0-1) and raise a
:class:`node_dada.errors.NodeDadaError` subclass instead of an OpenCV assertion.

Units. Spatial parameters (``radius``, ``sigma_space``) are in high-resolution
pixels. Colour parameters (``eps``, ``sigma_color``, ``sigma``) are in the units
of the raw guide, 0-1 (``eps`` squared), whatever OpenCV uses internally. The
depth passes through OpenCV in float32; every filter is linear in depth or, for
the weighted median, picks depth values, so the output is in the source's unit.

Default parameters. A parameter left at ``None`` is looked up with
:func:`default_params`: first in :data:`TUNED_PARAMS` (filled by the search on
the validation split, per method and scale), then in :data:`DEFAULT_PARAMS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from numbers import Real

import cv2
import numpy as np
import torch

from node_dada.baselines._inputs import Problem, bicubic_estimate, check_depth0, prepare
from node_dada.diffusion.checks import check_scale
from node_dada.errors import InputValueError, ShapeError

__all__ = [
    "DEFAULT_PARAMS",
    "TUNED_PARAMS",
    "default_params",
    "fast_global_smoother",
    "guided_filter",
    "joint_bilateral",
    "weighted_median",
]

#: Parameters found by the search on the validation split (docs/design.md section 6:
#: Middlebury val = Moebius, Lampshade1, Lampshade2, Shelves, Playtable), as
#: ``{method: {scale: {parameter: value}}}`` in the units of the function
#: arguments. Never tune on a test scene.
#:
#: Search record: results/tuning/middlebury_val.md (chosen values, grid, command)
#: and middlebury_val.csv (every tried setting with its validation MAE), made by
#: ``python -m node_dada.tuning --scales 4 8 16 32 --out results/tuning --no-progress``
#: (node_dada/tuning.py): the validation scenes with metric depth (Moebius, both
#: views, whole third-size images), lowest exact per-pixel MAE. The guided filter's
#: best window is the grid's smallest: on this data it can only match bicubic.
TUNED_PARAMS: dict[str, dict[int, dict[str, float]]] = {
    "guided_filter": {
        4: {"radius": 1, "eps": 0.01},
        8: {"radius": 1, "eps": 0.01},
        16: {"radius": 2, "eps": 0.01},
        32: {"radius": 4, "eps": 0.01},
    },
    "joint_bilateral": {
        4: {"sigma_space": 4.0, "sigma_color": 0.03},
        8: {"sigma_space": 8.0, "sigma_color": 0.03},
        16: {"sigma_space": 16.0, "sigma_color": 0.03},
        32: {"sigma_space": 32.0, "sigma_color": 0.03},
    },
    "fast_global_smoother": {
        4: {"lambda_": 10.0, "sigma_color": 0.01},
        8: {"lambda_": 100.0, "sigma_color": 0.01},
        16: {"lambda_": 100.0, "sigma_color": 0.01},
        32: {"lambda_": 1000.0, "sigma_color": 0.01},
    },
    "weighted_median": {
        4: {"radius": 4, "sigma": 0.1},
        8: {"radius": 8, "sigma": 0.1},
        16: {"radius": 16, "sigma": 0.03},
        32: {"radius": 32, "sigma": 0.03},
    },
}

#: Fallbacks for scales the search did not cover: hand-set starting points,
#: not the recorded search. Window sizes are given per unit of scale (an entry
#: ``<name>_per_scale`` gives ``<name> = value * scale``), colour tolerances in
#: guide units (0-1). Picked by a coarse check of mean absolute error on
#: Middlebury 2005/2006 third-size Moebius (validation), Art and Books (train)
#: at x4, x8 and x16, over grids around the values the filters' authors use
#: for guided upsampling (He et al., Guided Image Filtering, TPAMI 2013; Kopf
#: et al., Joint Bilateral Upsampling, 2007; Min et al., Fast Global Image
#: Smoothing, TIP 2014; Zhang et al., 100+ Times Faster Weighted Median Filter,
#: CVPR 2014) and OpenCV's defaults: window per scale {0.25, 0.5, 1, 2}; guided
#: filter eps {1e-5 .. 1e-1}; joint bilateral sigma_color {0.03, 0.1, 0.3};
#: smoother lambda_ {1 .. 1000} x sigma_color {0.003 .. 0.1}; weighted median
#: sigma {0.01 .. 0.3}. Mean MAE (cm) of the three scenes with these values,
#: x4 / x8 / x16 / x32: bicubic 0.90 / 1.63 / 2.73 / 4.51; guided filter
#: 0.90 / 1.62 / 2.73 / 4.49 (it copies guide texture into the depth at small
#: eps and blurs at large eps, so it can only match bicubic here); joint
#: bilateral 0.79 / 1.44 / 2.50 / 4.25; fast global smoother 0.87 / 1.50 /
#: 2.58 / 4.41; weighted median 0.67 / 1.26 / 2.33 / 4.13.
DEFAULT_PARAMS: dict[str, dict[str, float]] = {
    "guided_filter": {"radius_per_scale": 0.25, "eps": 1e-2},
    "joint_bilateral": {"sigma_space_per_scale": 1.0, "sigma_color": 0.03},
    # lambda_attenuation and num_iter: OpenCV's recommended values.
    "fast_global_smoother": {
        "lambda_": 100.0,
        "sigma_color": 0.01,
        "lambda_attenuation": 0.25,
        "num_iter": 3,
    },
    "weighted_median": {"radius_per_scale": 1.0, "sigma": 0.1},
}

# Weight functions of the weighted median (cv2.ximgproc.WMF_*).
_WMF_WEIGHTS = {
    "exp": cv2.ximgproc.WMF_EXP,
    "iv1": cv2.ximgproc.WMF_IV1,
    "iv2": cv2.ximgproc.WMF_IV2,
    "cos": cv2.ximgproc.WMF_COS,
    "jac": cv2.ximgproc.WMF_JAC,
    "off": cv2.ximgproc.WMF_OFF,
}
# Guide values may overshoot 0-1 by this much (resampling ringing) before they
# are refused; they are clipped for the 8-bit conversion.
_RANGE_TOLERANCE = 1e-3
# The weighted median clusters colour guides with k-means from OpenCV's global
# random generator; reseeding it before each call makes the filter repeatable.
_WMF_SEED = 0


def default_params(method: str, scale: int) -> dict[str, float]:
    """The parameters ``method`` uses at ``scale`` when the caller gives none.

    ``DEFAULT_PARAMS[method]``, each ``<name>_per_scale`` entry turned into
    ``<name> = value * scale``, overridden by ``TUNED_PARAMS[method][scale]``
    where the validation search covered that scale.

    Example:
        >>> default_params("guided_filter", 64)  # not tuned: the fallback
        {'radius': 16.0, 'eps': 0.01}
    """
    if method not in DEFAULT_PARAMS:
        raise InputValueError(f"method: expected one of {sorted(DEFAULT_PARAMS)}, got {method!r}")
    params: dict[str, float] = {}
    for key, value in DEFAULT_PARAMS[method].items():
        if key.endswith("_per_scale"):
            params[key.removesuffix("_per_scale")] = value * scale
        else:
            params[key] = value
    params.update(TUNED_PARAMS.get(method, {}).get(scale, {}))
    return params


def _resolve(method: str, scale: int, given: Mapping[str, float | None]) -> dict[str, float]:
    params = default_params(method, scale)
    params.update({key: value for key, value in given.items() if value is not None})
    for key, value in params.items():
        if isinstance(value, bool) or not (
            isinstance(value, Real) and np.isfinite(value) and value > 0
        ):
            raise InputValueError(
                f"{key}: expected a positive finite number for {method}, got {value!r}"
            )
    return params


def _check_guide_for_opencv(method: str, guide: torch.Tensor, channels: tuple[int, ...]) -> None:
    count = guide.shape[1]
    if count not in channels:
        names = [str(c) for c in channels]
        allowed = f"{', '.join(names[:-1])} or {names[-1]}"
        raise ShapeError(
            f"guide: {method} (OpenCV ximgproc) takes a guide with {allowed} channels, got "
            f"{count} (shape {tuple(guide.shape)}); pass a grey-level or RGB guide "
            "(e.g. guide.mean(1, keepdim=True)), or use 'bicubic' or 'dada', which take "
            "any number of channels"
        )
    low, high = float(guide.min()), float(guide.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise InputValueError(
            f"guide: {method} expects raw values in 0-1 (its colour parameters are in "
            f"those units), got range [{low:.4g}, {high:.4g}]; pass the image before "
            "normalisation, 8-bit images divided by 255"
        )


def _to_numpy_guides(guide: torch.Tensor, eight_bit: bool) -> np.ndarray:
    """(B, H, W, C) contiguous guides, float32 or uint8.

    RGB stays RGB (not OpenCV's BGR): every filter here compares colours with a
    distance that is symmetric in the channels.
    """
    array = guide.detach().cpu().permute(0, 2, 3, 1).numpy().astype(np.float32)
    if eight_bit:
        array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    else:
        array = np.clip(array, 0.0, 1.0)
    return np.ascontiguousarray(array)


def _filter_estimate(
    method: str,
    guide: torch.Tensor,
    source: torch.Tensor,
    scale: int,
    mask_lr: torch.Tensor | None,
    depth0: torch.Tensor | None,
    *,
    channels: tuple[int, ...],
    eight_bit: bool,
    apply: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> torch.Tensor:
    """Run ``apply(guide_hwc, depth_hw)`` on the bicubic estimate of each batch element."""
    problem: Problem = prepare(guide, source, scale, mask_lr)
    _check_guide_for_opencv(method, problem.guide, channels)
    if depth0 is None:
        estimate = bicubic_estimate(problem)
    else:
        estimate = check_depth0(depth0, problem)
    guides = _to_numpy_guides(problem.guide, eight_bit)
    depths = estimate.detach().cpu().numpy().astype(np.float32)
    out = np.stack(
        [
            apply(g if g.shape[-1] > 1 else g[..., 0], d[0])[None]
            for g, d in zip(guides, depths, strict=True)
        ]
    )
    return torch.from_numpy(out).to(device=source.device, dtype=source.dtype)


def guided_filter(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
    depth0: torch.Tensor | None = None,
    radius: int | None = None,
    eps: float | None = None,
) -> torch.Tensor:
    """The guided filter (He et al.) of the masked bicubic estimate.

    Args:
        guide: (B, C, H, W) float image in 0-1, C = 1, 2 or 3 (an OpenCV limit).
        source: (B, 1, h, w) depth in any unit, ``H = scale*h``, ``W = scale*w``.
        scale: integer factor.
        mask_lr: (B, 1, h, w) validity; None = finite non-zero values are valid.
        depth0: (B, 1, H, W) bicubic estimate in the source's unit, if already
            computed (see :func:`node_dada.baselines.bicubic`).
        radius: window radius in HR pixels (default: a quarter of the scale, at
            least 1).
        eps: regularisation, in squared guide units (default 1e-2).

    Returns:
        (B, 1, H, W) depth in the units, dtype and device of ``source``.

    Example:
        >>> import torch
        >>> guide, source = torch.rand(1, 3, 16, 16), torch.rand(1, 1, 4, 4) + 1
        >>> guided_filter(guide, source, scale=4).shape
        torch.Size([1, 1, 16, 16])
    """
    params = _resolve("guided_filter", check_scale(scale), {"radius": radius, "eps": eps})
    size, reg = max(1, round(params["radius"])), params["eps"]

    def apply(g: np.ndarray, d: np.ndarray) -> np.ndarray:
        return cv2.ximgproc.guidedFilter(g, d, size, reg, dDepth=cv2.CV_32F)

    return _filter_estimate(
        "guided_filter",
        guide,
        source,
        scale,
        mask_lr,
        depth0,
        channels=(1, 2, 3),
        eight_bit=False,
        apply=apply,
    )


def joint_bilateral(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
    depth0: torch.Tensor | None = None,
    sigma_space: float | None = None,
    sigma_color: float | None = None,
) -> torch.Tensor:
    """Joint bilateral filtering of the masked bicubic estimate (Kopf et al.'s
    joint bilateral upsampling, applied on the HR grid).

    Args:
        guide: (B, C, H, W) float image in 0-1, C = 1 or 3 (an OpenCV limit).
        sigma_space: spatial standard deviation in HR pixels (default: the
            scale); the window diameter is OpenCV's, about ``3 * sigma_space``.
        sigma_color: range standard deviation in guide units, on the L1 colour
            difference over the channels (default 0.03).
        Others as :func:`guided_filter`.

    Returns:
        (B, 1, H, W) depth in the units, dtype and device of ``source``.
    """
    params = _resolve(
        "joint_bilateral",
        check_scale(scale),
        {"sigma_space": sigma_space, "sigma_color": sigma_color},
    )
    space, colour = params["sigma_space"], params["sigma_color"]

    def apply(g: np.ndarray, d: np.ndarray) -> np.ndarray:
        # d = -1: OpenCV derives the window from sigma_space.
        return cv2.ximgproc.jointBilateralFilter(g, d, -1, colour, space)

    return _filter_estimate(
        "joint_bilateral",
        guide,
        source,
        scale,
        mask_lr,
        depth0,
        channels=(1, 3),
        eight_bit=False,
        apply=apply,
    )


def fast_global_smoother(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
    depth0: torch.Tensor | None = None,
    lambda_: float | None = None,
    sigma_color: float | None = None,
    lambda_attenuation: float | None = None,
    num_iter: int | None = None,
) -> torch.Tensor:
    """The fast global smoother (Min et al.) of the masked bicubic estimate.

    The guide is quantised to 8 bits (an OpenCV requirement).

    Args:
        guide: (B, C, H, W) float image in 0-1, C = 1 or 3 (an OpenCV limit).
        lambda_: regularisation weight (OpenCV's ``lambda``; default 100).
        sigma_color: colour standard deviation in guide units (default 0.01,
            about 2.5 grey levels).
        lambda_attenuation: decrease of ``lambda_`` per iteration (OpenCV's
            recommended 0.25).
        num_iter: number of passes (OpenCV's recommended 3).
        Others as :func:`guided_filter`.

    Returns:
        (B, 1, H, W) depth in the units, dtype and device of ``source``.
    """
    params = _resolve(
        "fast_global_smoother",
        check_scale(scale),
        {
            "lambda_": lambda_,
            "sigma_color": sigma_color,
            "lambda_attenuation": lambda_attenuation,
            "num_iter": num_iter,
        },
    )
    if not float(params["num_iter"]).is_integer():
        raise InputValueError(f"num_iter: expected a positive integer, got {num_iter!r}")
    weight, colour = params["lambda_"], params["sigma_color"] * 255.0
    attenuation, passes = params["lambda_attenuation"], int(params["num_iter"])

    def apply(g: np.ndarray, d: np.ndarray) -> np.ndarray:
        return cv2.ximgproc.fastGlobalSmootherFilter(
            g, d, weight, colour, lambda_attenuation=attenuation, num_iter=passes
        )

    return _filter_estimate(
        "fast_global_smoother",
        guide,
        source,
        scale,
        mask_lr,
        depth0,
        channels=(1, 3),
        eight_bit=True,
        apply=apply,
    )


def weighted_median(
    guide: torch.Tensor,
    source: torch.Tensor,
    *,
    scale: int,
    mask_lr: torch.Tensor | None = None,
    depth0: torch.Tensor | None = None,
    radius: int | None = None,
    sigma: float | None = None,
    weight_type: str = "exp",
) -> torch.Tensor:
    """The joint weighted median (Zhang et al.) of the masked bicubic estimate.

    The guide is quantised to 8 bits and the depth to 256 adaptive levels
    (OpenCV's implementation); a colour guide is clustered with k-means, for
    which OpenCV's global random generator is reseeded before every call so
    that results repeat.

    Args:
        guide: (B, C, H, W) float image in 0-1, C = 1 or 3 (an OpenCV limit).
        radius: window radius in HR pixels (default: the scale).
        sigma: colour standard deviation of the weights in guide units
            (default 0.1, OpenCV's 25.5 grey levels).
        weight_type: one of ``"exp"``, ``"iv1"``, ``"iv2"``, ``"cos"``,
            ``"jac"``, ``"off"`` (OpenCV's ``WMF_*``).
        Others as :func:`guided_filter`.

    Returns:
        (B, 1, H, W) depth in the units, dtype and device of ``source``.
    """
    if weight_type not in _WMF_WEIGHTS:
        raise InputValueError(
            f"weight_type: expected one of {sorted(_WMF_WEIGHTS)}, got {weight_type!r}"
        )
    params = _resolve("weighted_median", check_scale(scale), {"radius": radius, "sigma": sigma})
    size, colour = max(1, round(params["radius"])), params["sigma"] * 255.0
    kind = _WMF_WEIGHTS[weight_type]

    def apply(g: np.ndarray, d: np.ndarray) -> np.ndarray:
        cv2.setRNGSeed(_WMF_SEED)
        return cv2.ximgproc.weightedMedianFilter(g, d, size, sigma=colour, weightType=kind)

    return _filter_estimate(
        "weighted_median",
        guide,
        source,
        scale,
        mask_lr,
        depth0,
        channels=(1, 3),
        eight_bit=True,
        apply=apply,
    )
