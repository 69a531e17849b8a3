"""Graph passes: one pass per file (autodiff, simplification passes), and the pipeline."""
from .pipeline import (DEFAULT_PIPELINE, PASSES, Pipeline, PipelineReport, get_pass,  # noqa: F401
                       register_pass, run_passes, simplify)
from .autodiff import AutodiffError, check_differentiable, grad, hvp, vjp  # noqa: F401,E402

