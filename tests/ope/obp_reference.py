"""Open Bandit Pipeline's estimates on seeded arrays: `PYTHON tests/ope/obp_reference.py` prints them as JSON.

Runs under any Python with numpy and `obp` (obp 0.5.7 needs Python < 3.11, so not the project's 3.11
environment: e.g. a Python 3.10 venv with `pip install obp==0.5.7 "matplotlib<3.9"`). The test
`test_obp_equivalence.py` loads `make_arrays` from here, so both sides read the same arrays.
"""

import json

import numpy as np

CLIP = 3.0  # lambda_ of obp's DoublyRobust (clipping) and SwitchDoublyRobust


def make_arrays(seed: int = 7, n: int = 400, k: int = 5) -> dict[str, np.ndarray]:
    """A logged bandit dataset with a stochastic logging policy, a target policy with zeros, and an outcome model."""
    rng = np.random.default_rng(seed)
    logging = rng.random((n, k)) + 0.05
    logging /= logging.sum(axis=1, keepdims=True)  # (n, K)
    cdf = np.cumsum(logging, axis=1)
    action = np.minimum((cdf < rng.random(n)[:, None]).sum(axis=1), k - 1)  # (n,)
    target = rng.random((n, k)) * (rng.random((n, k)) < 0.7)
    target[np.arange(n), rng.integers(0, k, n)] += 0.5  # every row keeps some mass
    target /= target.sum(axis=1, keepdims=True)  # (n, K)
    q_hat = rng.random((n, k)) * 0.3  # (n, K)
    reward = (rng.random(n) < 0.1 + q_hat[np.arange(n), action]).astype(np.float64)
    return {
        "reward": reward,
        "action": action.astype(np.int64),
        "pscore": logging[np.arange(n), action],
        "action_dist": target,
        "q_hat": q_hat,
    }


def obp_estimates(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """obp 0.5.7's estimate_policy_value of each estimator on the arrays (one position)."""
    from obp.ope import (
        DirectMethod,
        DoublyRobust,
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
        SwitchDoublyRobust,
    )

    common = {
        "reward": arrays["reward"],
        "action": arrays["action"],
        "pscore": arrays["pscore"],
        "action_dist": arrays["action_dist"][:, :, None],
    }
    q = arrays["q_hat"][:, :, None]
    return {
        "ips": InverseProbabilityWeighting().estimate_policy_value(**common),
        "snips": SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**common),
        "dm": DirectMethod().estimate_policy_value(
            action_dist=common["action_dist"], estimated_rewards_by_reg_model=q
        ),
        "dr": DoublyRobust().estimate_policy_value(**common, estimated_rewards_by_reg_model=q),
        "dr_clipped": DoublyRobust(lambda_=CLIP).estimate_policy_value(
            **common, estimated_rewards_by_reg_model=q
        ),
        "switch_dr": SwitchDoublyRobust(lambda_=CLIP).estimate_policy_value(
            **common, estimated_rewards_by_reg_model=q
        ),
    }


if __name__ == "__main__":
    print(json.dumps({k: float(v) for k, v in obp_estimates(make_arrays()).items()}))
