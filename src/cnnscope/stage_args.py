"""The command line of every stage script in ``pipelines/``, parsed one way.

A study-level stage (``validate``, ``prepare``, ``compare``, ``atlas``, ``report``) takes
``--params``; a per-network stage (``train``, ``extract``, ``measures``, ``histograms``, ``oip``,
``exemplars``, ``trajectory``: one run per variant × seed) also ``--variant`` (checked against
``study.variants``, one clear error otherwise) and ``--seed``. The few options of one stage alone
(``train --no-progress``, ``report --reports``) are added through ``extra``. Nothing heavy is
imported here, so a stage's ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cnnscope.config import Params, check_variant, load_params


def _description(doc: str | None) -> str | None:
    """The first paragraph of a stage script's docstring: what ``--help`` says the stage does."""
    first = (doc or "").strip().split("\n\n")[0]
    return " ".join(first.split()) or None


def stage_args(
    doc: str | None,
    argv: list[str] | None,
    *,
    network: bool = False,
    extra: Callable[[argparse.ArgumentParser], object] | None = None,
) -> tuple[Params, argparse.Namespace]:
    """Parse a stage's command line (``doc``: its module docstring); returns the validated params
    and the parsed arguments. ``network``: a per-network stage (``--variant``, ``--seed``)."""
    parser = argparse.ArgumentParser(description=_description(doc))
    parser.add_argument("--params", default="params.yaml", help="parameters file (default: params.yaml)")
    if network:
        parser.add_argument("--variant", required=True, help="study variant, e.g. benchmark")
        parser.add_argument("--seed", type=int, required=True, help="training seed of the variant")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    params = load_params(args.params)
    if network:
        check_variant(params.study, args.variant)
    return params, args


def network_args(doc: str | None, argv: list[str] | None) -> tuple[Params, str, int]:
    """A per-network stage's command line: the validated params, the variant (one of
    ``study.variants``) and the seed."""
    params, args = stage_args(doc, argv, network=True)
    return params, args.variant, args.seed
