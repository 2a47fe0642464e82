"""The estimators equal Open Bandit Pipeline's (obp 0.5.7, `obp/ope/estimators.py`) to 1e-9.

obp cannot be installed into the project's environment: obp 0.5.7 requires Python < 3.11 (and pins
numpy 1.23 / scikit-learn 1.1 / torch 1.12), the project runs on 3.11 with numpy 2. So:
- OBP_VALUES were printed by `tests/ope/obp_reference.py` under Python 3.10.13 with obp 0.5.7 on the
  arrays of its `make_arrays()` (numpy's PCG64 streams are the same under numpy 1.23.5 and 2.4);
- with ICG_REC_OBP_PYTHON pointing to such an interpreter, the test reruns obp live and compares.
The classes compared: InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting,
DirectMethod, DoublyRobust, DoublyRobust(lambda_=3) (clipping) and SwitchDoublyRobust(lambda_=3), each
`estimate_policy_value` with one position (action_dist (n, K, 1)).
"""

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from icg_rec.ope.estimators import ESTIMATORS, BanditLog, estimate

HERE = Path(__file__).parent
OBP_VALUES = {  # obp 0.5.7, Python 3.10.13: `python tests/ope/obp_reference.py`
    "ips": 0.2493764367219019,
    "snips": 0.2433657424085898,
    "dm": 0.1564043875992796,
    "dr": 0.24677276748037533,
    "dr_clipped": 0.2325569287914645,
    "switch_dr": 0.2321858814256841,
}


def _reference():
    spec = importlib.util.spec_from_file_location("obp_reference", HERE / "obp_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ours(arrays: dict, clip: float) -> dict[str, float]:
    log = BanditLog(arrays["reward"], arrays["action"], arrays["pscore"], np.arange(len(arrays["reward"])))
    return {e: estimate(e, log, arrays["action_dist"], arrays["q_hat"], clip=clip) for e in ESTIMATORS}


def test_estimators_equal_obp_recorded_values():
    ref = _reference()
    ours = _ours(ref.make_arrays(), ref.CLIP)
    for name, value in OBP_VALUES.items():
        assert abs(ours[name] - value) < 1e-9, name


@pytest.mark.skipif(
    not os.environ.get("ICG_REC_OBP_PYTHON"),
    reason="set ICG_REC_OBP_PYTHON to a Python (< 3.11) with obp 0.5.7 to compare with obp live",
)
def test_estimators_equal_obp_live():
    ref = _reference()
    out = subprocess.run(
        [os.environ["ICG_REC_OBP_PYTHON"], str(HERE / "obp_reference.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    live = json.loads(out.stdout.strip().splitlines()[-1])
    ours = _ours(ref.make_arrays(), ref.CLIP)
    assert set(live) == set(ESTIMATORS)
    for name, value in live.items():
        assert abs(ours[name] - value) < 1e-9, name


def test_formulas_by_hand():
    """obp's _estimate_round_rewards, written out row by row (estimators.py, obp 0.5.7)."""
    ref = _reference()
    a = ref.make_arrays()
    r, act, p, pi, q = a["reward"], a["action"], a["pscore"], a["action_dist"], a["q_hat"]
    n, clip = len(r), ref.CLIP
    w = np.array([pi[i, act[i]] / p[i] for i in range(n)])
    direct = np.array([sum(pi[i, k] * q[i, k] for k in range(pi.shape[1])) for i in range(n)])
    resid = np.array([r[i] - q[i, act[i]] for i in range(n)])
    expected = {
        "ips": np.mean(r * w),  # InverseProbabilityWeighting: reward * iw
        "snips": np.mean(r * w / w.mean()),  # SelfNormalized...: reward * iw / iw.mean()
        "dm": np.mean(direct),  # DirectMethod: np.average(q_hat, weights=pi_e)
        "dr": np.mean(direct + w * resid),  # DoublyRobust
        "dr_clipped": np.mean(direct + np.minimum(w, clip) * resid),  # iw = np.minimum(iw, lambda_)
        "switch_dr": np.mean(direct + (w <= clip) * w * resid),  # switch_indicator * iw
    }
    ours = _ours(a, clip)
    for name, value in expected.items():
        assert abs(ours[name] - value) < 1e-12, name
