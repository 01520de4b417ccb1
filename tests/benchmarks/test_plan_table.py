"""The README's planning table (benchmarks/plan_table.py): a row per plan record, the batch
search's answer as the bracket it reached, and the command without where the record went."""

from benchmarks import plan_table
from jaxdiff.plan.report import largest_found

GIB = 2 ** 30


def record(tried, fits=True, needed=None):
    step = dict(fits=fits, memory=dict(peak=12 * GIB) if fits else {}, flops=2.5e13,
                flops_per_image=3.125e11, hlo_flops_corrected=2.4e13, needed_bytes=needed)
    return dict(command="python -m jaxdiff.plan --config=configs/ddpm.py:cifar10 "
                "--target=tpu:v5p:2x2x2 --find_batch --plan_output=/tmp/x.json",
                config="configs/ddpm.py:cifar10", target="tpu:v5p:2x2x2", per_chip_batch=80,
                accum_steps=1, hbm_bytes=95 * GIB, tried=tried, step=step)


def test_the_largest_batch_is_the_bracket_the_search_reached():
    tried = [(16, True, GIB), (80, True, 12 * GIB)]
    assert largest_found(tried + [(81, False, 96 * GIB)]) == "80"
    assert largest_found(tried + [(82, False, 96 * GIB)]) == "80 (82 refused)"
    assert largest_found(tried) == ">= 80"
    assert largest_found([(1, False, 20 * GIB)]) == "0"


def test_a_row_gives_every_column_and_the_command_without_its_output_file():
    cells = [cell.strip() for cell in plan_table.row(
        record([(16, True, GIB), (80, True, 12 * GIB), (81, False, 96 * GIB)])).split("|")[1:-1]]
    assert cells[:9] == ["configs/ddpm.py:cifar10", "tpu:v5p:2x2x2", "80 x 1", "yes", "80",
                         "12.0 / 95", "25.0", "312", "0.960"]
    assert cells[9] == ("`python -m jaxdiff.plan --config=configs/ddpm.py:cifar10 "
                        "--target=tpu:v5p:2x2x2 --find_batch`")
    assert plan_table.row(record([], fits=False)).split("|")[4:7] == [" no ", " - ", " - / 95 "]
    refused = plan_table.row(record([], fits=False, needed=int(135.75 * GIB))).split("|")[6]
    assert refused.strip() == "needs 135.8 / 95"
    shown = plan_table.row(record([(16, True, GIB), (80, True, 12 * GIB)])).split("|")[5]
    assert shown.strip() == ">= 80"
