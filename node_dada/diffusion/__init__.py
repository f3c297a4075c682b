"""Pure maths of DADA: coefficients, operators, adjustment, the discrete iteration.

Never imports Lightning (docs/contributing.md).
"""

from node_dada.diffusion.discrete import (
    DEFAULT_STEP,
    INFERENCE_PRE_ITER,
    TRAIN_ITER,
    discrete_dada,
    discrete_dada_two_phase,
    discrete_step,
)
from node_dada.diffusion.fidelity import Fidelity, coefficient_gradient, gradient_fidelity
from node_dada.diffusion.learning_free import (
    DEFAULT_KAPPA,
    learning_free_coefficients,
    learning_free_dada,
    learning_free_ode,
)
from node_dada.diffusion.ode import (
    ADAPTIVE_METHODS,
    FIXED_GRID_METHODS,
    GRAD_MODES,
    PROJECTIONS,
    ProjectedDiffusion,
    SolveInfo,
    growing_knots,
    projected_field,
    solve_ode,
)
from node_dada.diffusion.operators import (
    ADJUST_EPS,
    DEFAULT_LOG_KAPPA,
    block_mean,
    block_ratio,
    diffusion_operator,
    edge_coefficients,
    hard_adjust,
    perona_malik,
    upsample_nearest,
)
from node_dada.diffusion.sampling import (
    degrade,
    initial_estimate,
    normalize_guide,
    shift_positive,
)

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_GRID_METHODS",
    "Fidelity",
    "GRAD_MODES",
    "PROJECTIONS",
    "ProjectedDiffusion",
    "SolveInfo",
    "coefficient_gradient",
    "gradient_fidelity",
    "growing_knots",
    "projected_field",
    "solve_ode",
    "ADJUST_EPS",
    "DEFAULT_KAPPA",
    "DEFAULT_LOG_KAPPA",
    "DEFAULT_STEP",
    "INFERENCE_PRE_ITER",
    "TRAIN_ITER",
    "block_mean",
    "block_ratio",
    "degrade",
    "diffusion_operator",
    "discrete_dada",
    "discrete_dada_two_phase",
    "discrete_step",
    "edge_coefficients",
    "hard_adjust",
    "initial_estimate",
    "learning_free_coefficients",
    "learning_free_dada",
    "learning_free_ode",
    "normalize_guide",
    "perona_malik",
    "shift_positive",
    "upsample_nearest",
]
