"""The README's planning table from the JSON records of `python -m jaxdiff.plan
--plan_output=...` (one file per preset and target), each row with the command that made it.

    python benchmarks/plan_table.py plans/*.json
"""

import argparse
import json

from jaxdiff.plan.report import largest_found

GIB = 2 ** 30


def shown_command(command: str) -> str:
    """The record's command without its --plan_output (where this machine kept the record)."""
    return " ".join(part for part in command.split() if not part.startswith("--plan_output"))


def peak_cell(step: dict) -> str:
    """The peak of a plan that fits; for a refused one, "needs X": its peak over the HBM, or
    the compiler's figure of what it needed ("-" in records of older planners)."""
    if step["fits"]:
        return f"{step['memory']['peak'] / GIB:.1f}"
    needed = step.get("needed_bytes")
    return "-" if needed is None else f"needs {needed / GIB:.1f}"


def row(record: dict) -> str:
    step = record["step"]
    fits = "yes" if step["fits"] else "no"
    peak = peak_cell(step)
    largest = largest_found(record["tried"]) if record["tried"] else "-"
    accum = record["accum_steps"]
    tflop_step = step["flops"] / 1e12
    gflop_image = step["flops_per_image"] / 1e9
    independent = step.get("hlo_flops_corrected")  # absent from records of older planners
    check = "-" if independent is None else f"{independent / step['flops']:.3f}"
    return (f"| {record['config']} | {record['target']} | {record['per_chip_batch']} x {accum} "
            f"| {fits} | {largest} | {peak} / {record['hbm_bytes'] / GIB:.0f} | {tflop_step:.1f} "
            f"| {gflop_image:.0f} | {check} | `{shown_command(record['command'])}` |")


HEADER = ("| config | target | images per chip x accumulation | fits | largest per-chip batch "
          "| peak GiB / HBM | TFLOP per compiled step | GFLOP per image "
          "| independent / jaxpr FLOPs | command |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", help="JSON files written by --plan_output")
    args = parser.parse_args(argv)
    records = [json.load(open(path)) for path in args.records]
    records.sort(key=lambda r: (r["config"], r["target"]))
    print(HEADER)
    for record in records:
        print(row(record))


if __name__ == "__main__":
    main()
