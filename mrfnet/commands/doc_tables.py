"""`mrfnet doc-tables`: the Markdown tables of docs/architecture.md (Table I printed and built,
the deviations, the summary and the breakdown), computed from the topology data and real Caffe
nets (prototxt_gen.report); tests/test_prototxt_files.py checks the doc holds exactly these."""
from prototxt_gen import report

EXAMPLE = """
mrfnet doc-tables > /tmp/tables.md      # then paste the changed tables into docs/architecture.md
"""


def add_arguments(p):
    pass


def run(args):
    print(report.table_i_markdown())
    print(report.deviations_markdown())
    print(report.summary_markdown())
    print(report.breakdown_markdown())
    return 0
