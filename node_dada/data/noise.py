"""Sensor-like degradations of the low-resolution source (docs/design.md section 6):
what a real depth sensor adds on top of the block mean of the true depth.

A model is written ``KIND:LEVEL`` and models combine with ``+``, applied in order:

- ``gaussian:SIGMA``: white noise of standard deviation ``SIGMA`` in the depth's
  unit (millimetres for the project's datasets);
- ``tof:R``: time-of-flight-like, standard deviation ``R * depth`` (``tof:0.01``:
  1 % of the depth);
- ``stereo:R``: stereo-like, the inverse depth (disparity) jittered by half a step
  and quantised in steps of ``R`` times the median inverse depth, so the error grows
  with the square of the depth;
- ``dropout:P``: a fraction ``P`` of the source pixels lost (no data).

Example: ``"tof:0.01+dropout:0.05"``.

Alternatives separated by ``|`` make a mixture for training: each sample draws one
of them, with equal chances; ``clean`` is the alternative without noise. Example:
``"clean|gaussian:10|tof:0.02|stereo:0.01+dropout:0.05"``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from node_dada.errors import InputValueError

__all__ = ["NOISE_KINDS", "NoiseMixture", "SensorNoise", "degrade_sample",
           "parse_sensor_noise"]

NOISE_KINDS = ("gaussian", "tof", "stereo", "dropout")


@dataclass(frozen=True)
class SensorNoise:
    """A chain of ``(kind, level)`` degradations; ``str(noise)`` gives its spec back."""

    parts: tuple[tuple[str, float], ...]

    def __str__(self) -> str:
        return "+".join(f"{kind}:{level:g}" for kind, level in self.parts)

    def sigma(self, depth: torch.Tensor) -> torch.Tensor:
        """The noise's standard deviation at ``depth`` (dropout adds none; the
        stereo model's is that of its quantisation and jitter, linearised)."""
        total = torch.zeros_like(depth)
        for kind, level in self.parts:
            if kind == "gaussian":
                part = torch.full_like(depth, level)
            elif kind == "tof":
                part = level * depth
            elif kind == "stereo":
                median = depth.median()
                # step in inverse depth r/median; uniform rounding (1/12) plus jitter (1/4)
                part = depth.square() * (level / median) * math.sqrt(1 / 12 + 1 / 4)
            else:
                continue
            total = (total.square() + part.square()).sqrt()
        return total

    def apply(self, source: torch.Tensor, mask_lr: torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Degrade ``source`` (positive depth, any unit; 0 where ``mask_lr`` is false);
        returns the new source (0 where invalid) and mask. Deterministic for a seeded
        ``generator``."""
        source = source.clone()
        mask = mask_lr.clone()
        for kind, level in self.parts:
            if kind == "dropout":
                lost = torch.rand(source.shape, generator=generator) < level
                mask = mask & ~lost.to(mask.device)
                continue
            noise = torch.randn(source.shape, generator=generator).to(source)
            if kind == "gaussian":
                source = source + level * noise
            elif kind == "tof":
                source = source + level * source * noise
            else:
                inverse = 1.0 / source.clamp_min(1e-12)
                step = level * inverse[mask].median() if mask.any() else 1.0
                jitter = 0.5 * noise
                source = 1.0 / (torch.round(inverse / step + jitter) * step).clamp_min(
                    float(step) * 0.5)
        mask = mask & torch.isfinite(source) & (source > 0)
        return torch.where(mask, source, torch.zeros_like(source)), mask


@dataclass(frozen=True)
class NoiseMixture:
    """Alternatives of which each sample draws one (``None``: no noise); ``str`` gives
    the spec back."""

    alternatives: tuple[SensorNoise | None, ...]

    def __str__(self) -> str:
        return "|".join("clean" if noise is None else str(noise)
                        for noise in self.alternatives)

    def draw(self, generator: torch.Generator | None = None) -> SensorNoise | None:
        """One alternative, uniformly (deterministic for a seeded ``generator``)."""
        index = int(torch.randint(len(self.alternatives), (1,), generator=generator))
        return self.alternatives[index]


def parse_sensor_noise(
        spec: str | SensorNoise | NoiseMixture | None) -> SensorNoise | NoiseMixture | None:
    """``"gaussian:20"``, ``"tof:0.01+dropout:0.05"``, ``"clean|tof:0.02"``, ... (module
    docstring) or None."""
    if spec is None or isinstance(spec, (SensorNoise, NoiseMixture)):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise InputValueError(f"sensor noise: expected a spec such as 'gaussian:20' or "
                              f"'tof:0.01+dropout:0.05', got {spec!r}")
    if "|" in spec:
        alternatives = tuple(None if item.strip() == "clean" else _parse_chain(item)
                             for item in spec.split("|"))
        return NoiseMixture(alternatives)
    return _parse_chain(spec)


def _parse_chain(spec: str) -> SensorNoise:
    parts = []
    for item in spec.split("+"):
        kind, _, level_text = item.strip().partition(":")
        if kind not in NOISE_KINDS:
            raise InputValueError(f"sensor noise: unknown kind {kind!r} in {spec!r}; "
                                  f"expected one of {', '.join(NOISE_KINDS)} as KIND:LEVEL")
        try:
            level = float(level_text)
        except ValueError:
            level = math.nan
        upper = 1.0 if kind == "dropout" else math.inf
        if not (math.isfinite(level) and 0 <= level and (level < upper)):
            raise InputValueError(
                f"sensor noise: {kind} needs a level >= 0{' and < 1' if kind == 'dropout' else ''}"
                f", got {level_text!r} in {spec!r}")
        parts.append((kind, level))
    return SensorNoise(tuple(parts))


def degrade_sample(sample, noise: SensorNoise | NoiseMixture,
                   generator: torch.Generator | None = None):
    """``sample`` (a :class:`~node_dada.data.pipeline.Sample`) with its source degraded
    by ``noise`` in physical units (a mixture: by the alternative it draws), and the
    initial estimate made again from it; the ground truth is untouched."""
    from node_dada.diffusion.sampling import initial_estimate

    if isinstance(noise, NoiseMixture):
        noise = noise.draw(generator)
        if noise is None:
            return sample

    physical = sample.source[None] * sample.depth_scale
    noisy, mask = noise.apply(physical, sample.mask_lr[None], generator)
    source = noisy / sample.depth_scale
    if mask.any():
        depth0 = initial_estimate(source, mask, sample.scale)[0].float()
    else:
        depth0 = torch.zeros_like(sample.depth0)
    return dataclasses.replace(sample, source=source[0].float(), mask_lr=mask[0], depth0=depth0)
