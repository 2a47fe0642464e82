"""Personalized reward model: calibrated p(click | user, cover), learned offline from impression logs.

score(user u, cover c) = <user_vec(u), cover_vec(c)> + user_bias(u) + cover_bias(c) + item_bias(item)
  cover_vec = cover tower(image features or pixels) (+ a linear map of the title embedding)
  (the pixel tower reads learned convs and fixed `colour_statistics`: hue histogram, light, contrast)
  user_vec  = id embedding(u) + sum_k posterior(k | u's history) * taste_k

The tastes are `n_tastes` learned vectors in the cover space. A user's posterior over them is Bayes' rule
on every impression in the user's history, clicks and non-clicks alike:
  log posterior(k | u) = log prior(k) + sum over u's rows (item, y) of log p(y | user_bias(u), item, taste_k)
so a user with few impressions gets a taste near the population's (the prior mixture), and each
impression, clicked or not, moves it. This is the structure of a world where users share a handful of
tastes (SimWorld's cohorts); the id embedding keeps what the tastes do not explain.

Row 0 of the user tables is the generic user: a share of training rows (`user_dropout`) is shown as row 0
with an empty history, so user id `GENERIC_USER` (-1, refused in a training log) scores the population's
p(click | cover). Training rows see a history built out-of-fold (rows are split into `history_folds` folds; a row's history sums the user's
rows from the other folds), so no row sees its own label; `training` keeps those sums up to date
incrementally, so a training step costs in proportion to its batch. Prediction uses the history of every row given
to fit, which lies strictly before the rows being predicted under a temporal split.

Files: `config` (PersonalizedConfig, CoverInputs), `colour` (the fixed colour descriptor), `net` (towers
and the network), `training` (the training loop, bias initialisation, Platt scaling), `model` (the
estimator: fit, predict, the Reward call, save / load).
"""

from icg_rec.rewards.personalized.colour import colour_statistics
from icg_rec.rewards.personalized.config import CoverInputs, PersonalizedConfig
from icg_rec.rewards.personalized.model import PersonalizedRewardModel

__all__ = ["CoverInputs", "PersonalizedConfig", "PersonalizedRewardModel", "colour_statistics"]
