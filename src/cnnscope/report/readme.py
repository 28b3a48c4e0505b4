"""The repository README's "What the published studies found", generated from ``reports/*/headline.json``.

A finding typed by hand drifts from the data the next time a study is re-published (issue 25,
item 9). This module writes the section between two markers of ``README.md`` from each study's
``headline.json`` alone (the report stage writes it): the data, seeds and command, every
variant's test accuracy (mean ± sd over seeds) beside chance, and one line per claim of the
report's claims table with its verdict, difference and interval, no stronger than the verdict.
A headline written before it held the claims gives the verdict counts instead.

    python -m cnnscope.report.readme           # rewrite the section of README.md
    python -m cnnscope.report.readme --check   # exit 1 when README.md differs from the headlines

``tests/test_readme_findings.py`` fails when the README and the headlines disagree.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cnnscope.report.index import HEADLINE_FILE, VERDICT_ORDER

BEGIN = "<!-- findings: generated from reports/*/headline.json by `python -m cnnscope.report.readme`; do not edit -->"
END = "<!-- end of the generated findings -->"
#: The study listed first (the one ``dvc repro`` makes); the others follow by name.
FIRST = "default"


def _number(value: Any, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _accuracy(head: Mapping[str, Any]) -> str:
    stds = head.get("test_acc_std", {})
    parts = []
    for variant, acc in head["test_acc"].items():
        sd = stds.get(variant)
        parts.append(f"`{variant}` {100 * acc:.1f} %" + (f" ± {100 * sd:.1f}" if sd is not None else ""))
    chance = f"; chance {100 * head['chance']:.1f} %" if head.get("chance") is not None else ""
    spread = " (mean ± sd over seeds)" if stds else " (mean over seeds)"
    return f"Test accuracy{spread}: {', '.join(parts)}{chance}."


def claim_line(row: Mapping[str, Any], confidence: float | None) -> str:
    """One claim: verdict, letter, statement, difference on its layer, interval over seeds."""
    n = int(row["n_seeds"])
    if n >= 2 and row.get("seed_ci_low") is not None:
        level = f"{confidence:.0%} " if confidence is not None else ""
        interval = f"{level}interval over {n} seeds [{row['seed_ci_low']:+.3g}, {row['seed_ci_high']:+.3g}]"
    else:
        interval = f"{n} seed{'s' if n != 1 else ''}, no interval"
    control = f" *control: {row['control']}*" if row.get("control") else ""
    layer = f" on `{row['layer']}`" if row.get("layer") else ""
    return (
        f"  - **{row['verdict']}** ({row['claim']}){control} {row['statement']}: {row['measure']} "
        f"{_number(row.get('mean_difference'), '+.3g')}{layer}, {interval}."
    )


def study_item(folder_name: str, head: Mapping[str, Any]) -> list[str]:
    """The bullet of one study and its claim lines."""
    lines = [
        f"- **[`{head['study']}`](reports/{folder_name}/README.md)** ({head['data']}; {head['seeds']} training "
        f"seed{'s' if head['seeds'] != 1 else ''}; `{head['command']}`). {_accuracy(head)}"
    ]
    if "findings" in head:
        lines += [claim_line(row, head.get("confidence")) for row in head["findings"]]
    else:
        counts = ", ".join(f"{head['claims'][k]} {k}" for k in VERDICT_ORDER if head["claims"].get(k))
        lines.append(
            f"  - Verdicts of its claims: {counts} (each in its report's findings)."
            if counts
            else "  - No seed-level claim (its report shows numbers, not verdicts)."
        )
    return lines


def findings_section(reports: Path) -> str:
    """The generated section (between the markers, markers included) from every headline in ``reports``."""
    folders = sorted((p.parent for p in reports.glob(f"*/{HEADLINE_FILE}")), key=lambda f: (f.name != FIRST, f.name))
    lines = [BEGIN]
    for folder in folders:
        lines += study_item(folder.name, json.loads((folder / HEADLINE_FILE).read_text()))
    if len(lines) == 1:
        lines.append("No study has been published yet: run `dvc repro`.")
    return "\n".join([*lines, END])


def with_section(text: str, section: str) -> str:
    """``text`` with its part from :data:`BEGIN` to :data:`END` replaced by ``section``."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md has no generated findings section (the lines {BEGIN!r} … {END!r})")
    head, rest = text.split(BEGIN, 1)
    return head + section + rest.split(END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the README differs")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new = with_section(text, findings_section(args.reports))
    if args.check:
        if new != text:
            print(f"{args.readme}: the findings differ from {args.reports}/*/{HEADLINE_FILE}", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
        print(f"rewrote the findings of {args.readme} from {args.reports}/*/{HEADLINE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
