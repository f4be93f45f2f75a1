"""Exceptions of the solver package. Bad input is a ValueError/FileNotFoundError subclass so the
CLIs can print "error: ..." and exit with code 2 without knowing which module raised it."""


class SolverError(ValueError):
    """Base class: a setting of the schedule, the solver file or a training run is unusable."""


class ScheduleError(SolverError):
    """Dataset size, batch, GPU count or epochs do not give a valid schedule."""


class RunConfigError(SolverError):
    """Options of `mrfnet train` / `mrfnet caffe-stages` contradict each other or are missing."""


class MissingInputError(FileNotFoundError):
    """A database, folder, snapshot or JSON file named by an option does not exist."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf: training stopped; the message names the last good snapshot."""
