"""`gradlens.tables.Table`: gradlens's tables print as a terminal-sized summary, and stay plain lists of rows."""
import json

import pandas as pd

from gradlens.analysis.audit import AuditReport
from gradlens.analysis.rows import GradientRow
from gradlens.analysis.paths import horizon_table
from gradlens.tables import MAX_ROWS, WIDTH, Table


def test_horizon_table_prints_a_compact_summary_with_its_exact_counts():
    table = horizon_table("hwm-transformer", [10, 100, 1000], stop_gradient=False)
    text = repr(table)
    assert len(repr(list(table))) > 100_000 and len(text) < 1_000  # the list itself prints ~250 KB
    lines = text.splitlines()
    assert lines[0] == "Table: 3 rows × 15 columns"
    assert lines[1].startswith("every row: model_class=hwm-transformer, level=time, policy=closed")
    assert lines[2].split() == ["horizon", "nodes", "edges", "paths", "log10_paths", "longest", "mean_length"]
    assert lines[3].split()[3] == "29524" and lines[5].split()[3] == f"{str(table[2]['paths'])[:1]}." \
        f"{str(table[2]['paths'])[1:4]}e+476"  # 3^700-sized integers, exact in the rows, abridged in print
    assert lines[-1].startswith("not shown: paths_per_action, longest_per_action, mean_length_per_action")
    assert max(map(len, lines[:-1])) <= WIDTH and table[0]["paths"] == 29524 and isinstance(table, list)


def test_long_tables_show_their_ends_and_wide_ones_name_the_columns_left_out():
    rows = Table({"i": i, **{f"column_{c}": float(c * i) for c in range(20)}} for i in range(40))
    lines = str(rows).splitlines()
    assert lines[0] == "Table: 40 rows × 21 columns" and f"… {40 - MAX_ROWS} more rows" in lines
    assert len(lines) == 3 + MAX_ROWS + 2 and lines[1] == "every row: column_0=0"  # title, constants, header
    assert max(map(len, lines[:-1])) <= WIDTH
    assert lines[-1].startswith("not shown: column_") and "column_19" in lines[-1]
    assert str(Table()) == "Table: 0 rows"


def test_report_sections_are_tables_and_the_report_prints_in_one_line():
    report = AuditReport(system={"name": "toy"}, models=["markov"], horizons=[2], config={},
                         gradients=[{"method": "markov", "estimator": "first-order", "horizon": 2, "cosine": 0.5}])
    back = AuditReport.from_json(report.to_json())
    assert isinstance(back.gradients, Table) and back.gradients == report.gradients
    assert back.gradients[0] == GradientRow("markov", "first-order", 2, cosine=0.5)
    assert json.loads(report.to_json())["gradients"] == [GradientRow("markov", "first-order", 2, cosine=0.5).as_dict()]
    assert "cosine" in repr(back.gradients) and pd.DataFrame(back.gradients).loc[0, "cosine"] == 0.5
    assert repr(report) == ("AuditReport('toy', models ['markov'], horizons [2]: fits of 0 models, gradients 1 rows, "
                            "jacobians 0 rows, landscapes 0 rows, paths 0 rows, growth 0 rows, problems 0 rows, "
                            "warnings 0 rows)")
