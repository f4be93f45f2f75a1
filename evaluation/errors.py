"""Exceptions of evaluation (ValueError / FileNotFoundError subclasses, per the team contract)."""


class EvaluationError(ValueError):
    """Pairs, options or run files that cannot be evaluated as given."""


class RunFileError(EvaluationError):
    """A run result JSON that `mrfnet tables` cannot read."""
