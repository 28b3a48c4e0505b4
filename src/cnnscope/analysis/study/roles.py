"""Which variants the study contrasts: the roles come from the config, never from variant names.

``study.contrasts`` lists ``[variant, reference]`` pairs (e.g. the fully trained network against
the one trained on a subset), and every variant with ``train: false`` is a *null model* that each
other variant is also compared with. The differences table, the DVC summary and the report's
claims all follow these roles, so renaming the variants changes nothing but the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only the type: the analysis runs without the config stack
    from cnnscope.config import StudyConfig


@dataclass(frozen=True)
class Roles:
    #: ``(variant, reference)`` pairs the study is about, in config order.
    contrasts: list[tuple[str, str]]
    #: Variants that are never trained (random initialisation): the reference of every other variant.
    null_models: list[str]

    @classmethod
    def from_study(cls, study: StudyConfig) -> Roles:
        return cls(
            contrasts=[(a, b) for a, b in study.contrasts],
            null_models=[v for v in study.variants if not study.variant_specs[v].train],
        )

    def present(self, variants: list[str]) -> list[tuple[str, str]]:
        """The contrasts whose two variants are both among ``variants``."""
        return [(a, b) for a, b in self.contrasts if a in variants and b in variants]

    def pairs(self, variants: list[str]) -> list[tuple[str, str]]:
        """``(variant, reference)`` pairs to difference among ``variants``: the contrasts, then
        every variant against each null model."""
        pairs = self.present(variants)
        pairs += [(v, n) for n in self.null_models if n in variants for v in variants if v != n]
        return list(dict.fromkeys(pairs))
