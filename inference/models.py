"""Where a variant's deploy net and shipped weights live, and what to say when they are missing.

Layout (committed in the repository): models/<variant>/deploy.prototxt (written by
`mrfnet prototxt --out models`) and models/<variant>/<variant>.caffemodel (trained weights).
"""
from pathlib import Path

from prototxt_gen.topology import DEFAULT_VARIANT, VARIANT_SPECS, VARIANTS  # caffe-free module

from .errors import ModelNotFoundError

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

__all__ = ["DEFAULT_VARIANT", "VARIANTS", "MODELS_DIR", "title", "resolve_model"]


def title(variant):
    """The paper's spelling of a variant name ("mrfnet" -> "MRFNet"); unknown names unchanged."""
    spec = VARIANT_SPECS.get(variant)
    return spec.title if spec else variant


def resolve_model(variant=DEFAULT_VARIANT, deploy=None, weights=None, models_dir=MODELS_DIR):
    """(deploy, weights) paths: explicit ones as given, else the variant's shipped files.

    Raises ModelNotFoundError telling the user how to get a missing file.
    """
    vdir = Path(models_dir) / variant
    deploy = Path(deploy) if deploy else vdir / "deploy.prototxt"
    weights = Path(weights) if weights else vdir / f"{variant}.caffemodel"
    if not deploy.is_file():
        raise ModelNotFoundError(
            f"deploy prototxt not found: {deploy}. Generate the nets with "
            "`mrfnet prototxt --out models`, or pass --deploy FILE.")
    if not weights.is_file():
        raise ModelNotFoundError(
            f"weights not found: {weights}. No trained {title(variant)} model is installed there: "
            f"train one with `mrfnet train --variant {variant}` (see docs/training.md) and copy "
            "its final .caffemodel to that path, or pass --weights FILE.")
    return deploy, weights
