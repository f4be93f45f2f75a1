"""Training: the paper's schedule (schedule), solver files (solver_file), the `caffe train`
stages (stages, `mrfnet caffe-stages`) and the pycaffe trainer (trainer, `mrfnet train`).
See docs/training.md."""
