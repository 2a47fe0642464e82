"""`PersonalizedRewardModel`: fit / predict / reward call / save / load around `PersonalizedNet`."""

from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from icg_rec.device import DeviceError, resolve_device
from icg_rec.errors import CheckpointError, SchemaError, UnknownIdError
from icg_rec.io import load_weights, read_json, save_weights, verify_folder, write_folder, write_json
from icg_rec.rewards.base import GENERIC_USER, RewardInputs
from icg_rec.rewards.personalized.config import TOWERS, CoverInputs, PersonalizedConfig
from icg_rec.rewards.personalized.net import PersonalizedNet
from icg_rec.rewards.personalized.training import (
    fit_platt,
    latest_per_user,
    row_logits,
    store_history,
    stored_loglik,
    train_net,
)
from icg_rec.validation import check_columns, check_fitted, lookup, table_rows

# Feature dimensions are standardized by max(std, FEATURE_STD_FLOOR * mean std): a dimension that is
# nearly constant over the training covers must not turn rounding noise into large inputs.
FEATURE_STD_FLOOR = 0.1


class PersonalizedRewardModel:
    """p(click | user, cover) with scikit-learn habits, usable as the "personalized" Reward.

    As a Reward it is differentiable in the pixels: "embedding" towers run pixels -> image_encoder.forward
    -> cover tower; "cnn" towers read the pixels directly (they must be image_size x image_size).
    User id `GENERIC_USER` (-1) is the generic user; `fit` refuses a log holding that id.

    Args:
        config: model and training settings.
        image_encoder: the frozen ImageEncoder whose features the "embedding" tower was trained on; needed
            only to score pixels (the Reward call), not to fit or predict from precomputed features. It
            must compute on `device`.
        device: "cpu" or "cuda[:N]" (see `icg_rec.device`): where `fit` trains and the model scores;
            `load` takes it too. Covers handed to the Reward call must be on this device.
    """

    name = "personalized"
    differentiable = True

    def __init__(
        self,
        config: PersonalizedConfig | None = None,
        image_encoder: nn.Module | None = None,
        device: str = "cpu",
    ) -> None:
        self.config = config or PersonalizedConfig()
        self.image_encoder = image_encoder
        self.device = device

    # ------------------------------------------------------------------ fit
    def fit(
        self, interactions: pl.DataFrame, covers: CoverInputs, seed: int = 0, progress: bool = False
    ) -> "PersonalizedRewardModel":
        """Trains on impressions, keeping the epoch with the best log loss on each user's latest rows.

        Args:
            interactions: user_id, item_id, label (1 click / 0 not), timestamp.
            covers: tower inputs for (at least) every item in `interactions`.
            seed: seeds initialisation, folds, dropout and batching.
            progress: show a tqdm bar over epochs.

        Returns:
            self, with `net_`, `user_ids_`, `item_ids_`, `platt_` (a, b), `history_` (per-epoch losses),
            `device_`.
        """
        cfg = self.config
        self.device_ = device = resolve_device(self.device)
        if cfg.cover_tower not in TOWERS:
            raise ValueError(f"cover_tower must be one of {TOWERS}, got {cfg.cover_tower!r}")
        if cfg.colour_bins < 0:
            raise ValueError(f"colour_bins must be >= 0, got {cfg.colour_bins}")
        check_columns(interactions, ("user_id", "item_id", "label", "timestamp"), "interactions")
        if (n := int((interactions["user_id"] == GENERIC_USER).sum())) > 0:
            raise SchemaError(
                f"interactions hold {n} row(s) of user_id {GENERIC_USER}, the id reserved for the generic "
                "user of the reward model; give those users another id"
            )
        self._check_covers(covers)
        torch.manual_seed(seed)
        train, valid = latest_per_user(interactions, cfg.valid_fraction)
        self.user_ids_ = np.unique(train["user_id"].to_numpy())
        order = np.argsort(np.asarray(covers.item_ids, dtype=np.int64))
        self.item_ids_ = np.asarray(covers.item_ids, dtype=np.int64)[order]
        images = torch.as_tensor(np.asarray(covers.images)[order], dtype=torch.float32)
        titles = None if covers.titles is None else torch.as_tensor(covers.titles[order], dtype=torch.float32)
        self.image_encoder_name_ = getattr(self.image_encoder, "name", None)
        feat_dim = images.shape[1] if images.ndim == 2 else 1
        net = PersonalizedNet(cfg, len(self.user_ids_), len(self.item_ids_), feat_dim, _width(titles))
        if images.ndim == 2:
            std = images.std(0)  # (feat_dim,)
            net.feat_mean.copy_(images.mean(0))
            net.feat_std.copy_(std.clamp_min(max(FEATURE_STD_FLOOR * std.mean().item(), 1e-6)))
        if titles is not None:
            net.title_table[1:] = titles
        self.net_ = net

        rows = self._rows(train)
        valid_rows = self._rows(valid)
        self.history_ = train_net(net, cfg, images, rows, valid_rows, seed, progress, device)
        images = images.to(device)
        rows, valid_rows = (tuple(t.to(device) for t in r) for r in (rows, valid_rows))
        vu, vi, vy = valid_rows
        with torch.no_grad():
            self.platt_ = fit_platt(row_logits(net, cfg, images, vu, vi), vy) if len(vy) else (1.0, 0.0)
            # predictions read every row given to fit: the validation slice is the latest
            store_history(net, images, *(torch.cat([a, b]) for a, b in zip(rows, valid_rows, strict=True)))
        return self

    def _rows(self, frame: pl.DataFrame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user rows, item rows, labels) of a training frame."""
        return (
            torch.as_tensor(self._user_rows(frame["user_id"].to_numpy())),
            torch.as_tensor(self._item_rows(frame["item_id"].to_numpy(), strict=True)),
            torch.tensor(frame["label"].to_numpy(), dtype=torch.float32),
        )

    # ------------------------------------------------------------------ predict
    def predict(self, frame: pl.DataFrame, covers: CoverInputs) -> np.ndarray:
        """Calibrated p(click) for each (user_id, item_id) row; user_id `GENERIC_USER` is the generic user.

        Args:
            frame: user_id and item_id columns.
            covers: tower inputs holding every item of `frame` (items unseen in fit get item bias 0).

        Returns:
            float64 (n_rows,).
        """
        self._check_fitted()
        check_columns(frame, ("user_id", "item_id"), "frame")
        self._check_covers(covers)
        cover_ids = np.asarray(covers.item_ids, dtype=np.int64)
        order = np.argsort(cover_ids)
        items = frame["item_id"].to_numpy()
        pos, known = lookup(cover_ids[order], items)
        if missing := sorted(set(items[~known].tolist())):
            raise UnknownIdError(
                f"covers hold no features for {len(missing)} item id(s) of frame, e.g. {missing[:5]}"
            )
        device = self.device_
        images = torch.as_tensor(np.asarray(covers.images)[order][pos], dtype=torch.float32).to(device)
        if self.net_.title is not None and covers.titles is None:
            raise SchemaError("this model reads title embeddings: covers.titles is required")
        titles = (
            None
            if covers.titles is None
            else torch.as_tensor(covers.titles[order][pos], dtype=torch.float32).to(device)
        )
        u = torch.as_tensor(self._user_rows(frame["user_id"].to_numpy())).to(device)
        i = torch.as_tensor(self._item_rows(items, strict=False)).to(device)
        net = self.net_.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(u), 4096):
                c = net.cover_vec(images[s : s + 4096], None if titles is None else titles[s : s + 4096])
                out.append(self._head(c, u[s : s + 4096], i[s : s + 4096]))
        return torch.cat(out).double().cpu().numpy() if out else np.zeros(0)

    def _head(self, c: torch.Tensor, u: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """Calibrated probability from cover vectors and table rows."""
        loglik = stored_loglik(self.net_, self.config, u) if self.config.use_user else None
        logit = self.net_.logit(c, u, loglik, i)  # (batch,)
        a, b = self.platt_
        return torch.sigmoid(a * logit + b)

    # ------------------------------------------------------------------ reward
    @property
    def input_size(self) -> int:
        """Side of the square pixels the Reward call reads (the cnn tower's, or the image encoder's)."""
        if self.config.cover_tower == "cnn":
            return self.config.image_size
        if self.image_encoder is None:
            raise ValueError("an 'embedding' cover tower needs image_encoder= to score pixels")
        return self.image_encoder.image_size

    def __call__(self, inputs: RewardInputs) -> torch.Tensor:
        """Calibrated p(click) of each cover for its user, differentiable in `inputs.images`.

        Returns:
            (batch,) in (0, 1). Unknown user ids raise UnknownIdError; user_ids None (or the id
            `GENERIC_USER`) scores for the generic user.
        """
        self._check_fitted()
        images = inputs.images
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (batch, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        if images.device != self.device_:
            raise DeviceError(
                f"covers are on {images.device} but this personalized reward computes on {self.device_}; "
                f"fit or load it with device={str(images.device)!r}"
            )
        n = images.shape[0]
        if self.config.cover_tower == "cnn":
            s = self.config.image_size
            if images.shape[2:] != (s, s):
                raise ValueError(f"the cnn cover tower reads {s}x{s} covers, got {tuple(images.shape[2:])}")
            x = images
        else:
            if self.image_encoder is None:
                raise ValueError("an 'embedding' cover tower needs image_encoder= to score pixels")
            x = self.image_encoder(images)  # (batch, feat_dim)
        users = inputs.user_ids if inputs.user_ids is not None else torch.full((n,), GENERIC_USER)
        u = torch.as_tensor(self._user_rows(users.cpu().numpy())).to(self.device_)
        if inputs.item_ids is None:
            if self.net_.title is not None:
                raise ValueError("this model reads title embeddings by item id: pass inputs.item_ids")
            i = torch.zeros(n, dtype=torch.long, device=self.device_)
        else:
            i = torch.as_tensor(
                self._item_rows(inputs.item_ids.cpu().numpy(), strict=self.net_.title is not None)
            ).to(self.device_)
        self.net_.eval()
        titles = self.net_.title_table[i] if self.net_.title is not None else None  # (batch, title_dim)
        return self._head(self.net_.cover_vec(x, titles), u, i)

    def freeze(self) -> "PersonalizedRewardModel":
        """Stops gradients into the network's parameters (a fixed reward to optimize covers against)."""
        self._check_fitted()
        self.net_.requires_grad_(False).eval()
        return self

    # ------------------------------------------------------------------ save / load
    def save(self, folder: str | Path) -> Path:
        """Writes config.json and weights.safetensors into `folder`, as a set (`write_folder`)."""
        self._check_fitted()
        folder = Path(folder)
        write_folder(folder, self._write)
        return folder

    def _write(self, folder: Path) -> None:
        meta = {
            "config": asdict(self.config),
            "platt": list(self.platt_),
            "image_encoder_name": self.image_encoder_name_,
            "feat_dim": int(self.net_.feat_mean.shape[0]),
            "title_dim": int(self.net_.title_table.shape[1]),
        }
        tensors = {k: v.cpu() for k, v in self.net_.state_dict().items()}
        tensors["user_ids"] = torch.as_tensor(self.user_ids_)
        tensors["item_ids"] = torch.as_tensor(self.item_ids_)
        save_weights(folder / "weights.safetensors", tensors)
        write_json(folder / "config.json", meta)

    @classmethod
    def load(
        cls, folder: str | Path, image_encoder: nn.Module | None = None, device: str = "cpu"
    ) -> "PersonalizedRewardModel":
        """Loads a model written by `save` onto `device`; the image encoder must carry the name it was fitted with.

        Raises:
            CheckpointError: a file is missing, changed since it was saved (MANIFEST.json) or does not match
                the config, before anything is built.
        """
        folder = Path(folder)
        target = resolve_device(device)
        verify_folder(folder, required=["config.json", "weights.safetensors"])
        meta = read_json(folder / "config.json")
        if isinstance(meta.get("config"), dict):  # written before colour_bins existed: no colour statistics
            meta["config"].setdefault("colour_bins", 0)
        known = {f.name for f in fields(PersonalizedConfig)}
        needed = {"config", "platt", "image_encoder_name", "feat_dim", "title_dim"}
        if not isinstance(meta.get("config"), dict) or set(meta["config"]) - known or needed - set(meta):
            raise CheckpointError(f"{folder / 'config.json'} does not hold a PersonalizedConfig")
        name = getattr(image_encoder, "name", None)
        if image_encoder is not None and meta["image_encoder_name"] not in (None, name):
            raise CheckpointError(
                f"{folder} was fitted on image encoder {meta['image_encoder_name']!r}, got {name!r}"
            )
        tensors = load_weights(folder / "weights.safetensors")
        model = cls(PersonalizedConfig(**meta["config"]), image_encoder, device)
        model.user_ids_ = tensors.pop("user_ids", torch.zeros(0, dtype=torch.long)).numpy()
        model.item_ids_ = tensors.pop("item_ids", torch.zeros(0, dtype=torch.long)).numpy()
        model.net_ = PersonalizedNet(
            model.config, len(model.user_ids_), len(model.item_ids_), meta["feat_dim"], meta["title_dim"]
        )
        try:
            model.net_.load_state_dict(tensors)
        except RuntimeError as err:
            raise CheckpointError(
                f"{folder / 'weights.safetensors'} does not match its config: {err}"
            ) from err
        model.platt_ = tuple(meta["platt"])
        model.image_encoder_name_ = meta["image_encoder_name"]
        model.device_ = target
        model.net_.to(target)
        return model

    # ------------------------------------------------------------------ helpers
    def _check_fitted(self) -> None:
        check_fitted(self, "net_")

    def _check_covers(self, covers: CoverInputs) -> None:
        images = np.asarray(covers.images)
        n = len(covers.item_ids)
        want = 2 if self.config.cover_tower == "embedding" else 4
        if images.ndim != want or images.shape[0] != n:
            shape = "(n, feat_dim) features" if want == 2 else "(n, 3, S, S) pixels"
            raise SchemaError(
                f"a {self.config.cover_tower!r} cover tower reads {shape} for {n} item ids, got {images.shape}"
            )
        if want == 4 and images.shape[1:] != (3, self.config.image_size, self.config.image_size):
            raise SchemaError(
                f"cnn covers must be (n, 3, {self.config.image_size}, {self.config.image_size}), got {images.shape}"
            )
        if covers.titles is not None and len(covers.titles) != n:
            raise SchemaError(f"covers.titles has {len(covers.titles)} rows for {n} item ids")

    def user_vectors(self, user_ids: np.ndarray | None = None) -> torch.Tensor:
        """The user side the model scores covers with: id embedding + posterior-mean taste.

        Args:
            user_ids: (n,) ids seen at fit, or `GENERIC_USER` for the generic user; None = every fitted
                user in `user_ids_` order.

        Returns:
            (n, dim) float32, detached.
        """
        if not self.config.use_user:
            raise ValueError("the reward model has no user side (use_user=False): it holds no user vectors")
        self._check_fitted()
        ids = self.user_ids_ if user_ids is None else np.asarray(user_ids)
        rows = torch.as_tensor(self._user_rows(ids)).to(self.device_)  # raises UnknownIdError on unknown ids
        with torch.no_grad():
            return (
                self.net_.user_vec(rows, stored_loglik(self.net_, self.config, rows)).float().cpu()
            )  # (n, dim)

    def _user_rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Table rows of user ids: GENERIC_USER -> 0 (generic); unknown ids raise UnknownIdError."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        if not self.config.use_user:
            return np.zeros(len(user_ids), dtype=np.int64)
        rows = table_rows(self.user_ids_, user_ids)
        if bad := sorted(set(user_ids[(rows == 0) & (user_ids != GENERIC_USER)].tolist())):
            raise UnknownIdError(
                f"{len(bad)} user id(s) were not in the training log, e.g. {bad[:5]}; "
                f"pass {GENERIC_USER} for the generic user"
            )
        return rows

    def _item_rows(self, item_ids: np.ndarray, strict: bool) -> np.ndarray:
        """Table rows of item ids; unknown -> 0 (no item bias), or UnknownIdError when `strict`."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        rows = table_rows(self.item_ids_, item_ids)
        if strict and (bad := sorted(set(item_ids[rows == 0].tolist()))):
            raise UnknownIdError(f"{len(bad)} item id(s) have no cover features, e.g. {bad[:5]}")
        return rows


def _width(titles: torch.Tensor | None) -> int:
    return 0 if titles is None else titles.shape[1]
