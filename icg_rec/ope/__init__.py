"""Offline credit for new covers: cover policies, off-policy estimators (equal to obp's) and their reports."""

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

__all__ = [
    "ESTIMATORS",
    "BanditLog",
    "CoverCandidates",
    "Diagnostics",
    "OPEConfig",
    "OPEReport",
    "OutcomeConfig",
    "PolicyContext",
    "diagnostics",
    "estimate",
    "evaluate_policies",
    "fit_outcome_oof",
    "load_policy",
    "parse_policy",
    "policy_context",
    "save_policy",
    "write_ope_report",
]
