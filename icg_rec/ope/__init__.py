"""Offline credit for new covers: cover policies, off-policy estimators (equal to obp's) and their reports.

Importing the package is light: each name imports its submodule on first use.
"""

from typing import TYPE_CHECKING

from icg_rec._lazy import attach

if TYPE_CHECKING:
    from icg_rec.ope.estimators import ESTIMATORS, BanditLog, Diagnostics, diagnostics, estimate
    from icg_rec.ope.evaluate import OPEConfig, OPEReport, evaluate_policies, write_ope_report
    from icg_rec.ope.outcome import OutcomeConfig, fit_outcome_oof
    from icg_rec.ope.policies import (
        CoverCandidates,
        PolicyContext,
        load_policy,
        parse_policy,
        policy_context,
        save_policy,
    )

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        "estimators": ["ESTIMATORS", "BanditLog", "Diagnostics", "diagnostics", "estimate"],
        "evaluate": ["OPEConfig", "OPEReport", "evaluate_policies", "write_ope_report"],
        "outcome": ["OutcomeConfig", "fit_outcome_oof"],
        "policies": [
            "CoverCandidates",
            "PolicyContext",
            "load_policy",
            "parse_policy",
            "policy_context",
            "save_policy",
        ],
    },
)
