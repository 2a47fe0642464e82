"""Machinery both aligners share: what trains, the frozen warm-up anchor, batches, checkpoints.

What trains: the adapter and the user refiner, plus optional LoRA on the UNet's attention projections
(peft, through diffusers' `add_adapter`). The prompter and the UNet's own weights stay frozen.
The anchor is a frozen copy of the adapter and refiner taken when `fit` starts (the warm-up weights): the
reward aligner keeps its conditioning tokens close to the anchor's, the DPO aligner uses it as the
reference model. On resume the anchor is taken from the pipeline *before* the checkpoint is loaded, so
pass the warm-up pipeline both times.
"""

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from peft import LoraConfig

from icg_rec.alignment.data import Audience, ItemSet
from icg_rec.device import autocast, resolve_device, resolve_dtype
from icg_rec.errors import CheckpointError, SchemaError
from icg_rec.figures import contact_sheet
from icg_rec.generation.pipeline import ICGPipeline
from icg_rec.generation.warmup import prepare_items
from icg_rec.io import (
    atomic_write,
    load_state_into,
    load_weights,
    prefixed,
    read_json,
    save_weights,
    verify_folder,
    write_folder,
    write_json,
)
from icg_rec.rewards.base import RewardInputs
from icg_rec.rewards.combiner import MultiReward, RewardOutput

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILES = ["weights.safetensors", "optimizer.pt", "rng.safetensors", "state.json"]
LORA_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
]  # attention projections of every diffusers Attention block


class AlignerBase:
    """Shared state of the aligners; subclasses implement `fit`.

    `device` / `dtype` (see `icg_rec.device`): `fit` moves the pipeline to `device` and runs sampling,
    rewards and losses under autocast in `dtype` ("float32" or "bfloat16"); the rewards must already
    compute on that device (e.g. `PersonalizedRewardModel(..., device="cuda")`).

    Attributes after `fit`: `history_` (one dict of logged numbers per step or round), `step_`.
    """

    def __init__(
        self, pipeline: ICGPipeline, reward: MultiReward, device: str = "cpu", dtype: str = "float32"
    ) -> None:
        self.pipeline = pipeline
        self.reward = reward
        self.device = device
        self.dtype = dtype

    # ------------------------------------------------------------------ setup
    def _setup(
        self, items: ItemSet, audience: Audience, lora_rank: int, gradient_checkpointing: bool, seed: int
    ) -> None:
        """Moves the pipeline to the device, freezes the backbone, snapshots the anchor, adds LoRA
        (initialized from `seed`), prepares the items once."""
        pipe = self.pipeline
        self.device_ = resolve_device(self.device)
        self.dtype_ = resolve_dtype(self.dtype, self.device_, training=True)
        pipe.to(self.device_)
        if audience.vectors.shape[1] != pipe.refiner.config.user_dim:
            raise SchemaError(
                f"audience vectors are {audience.vectors.shape[1]}-d but the refiner reads "
                f"user_dim={pipe.refiner.config.user_dim}"
            )
        pipe.prompter.requires_grad_(False)
        pipe.unet.requires_grad_(False)
        pipe.adapter.requires_grad_(True)
        pipe.refiner.requires_grad_(True)
        self.anchor_refiner_ = copy.deepcopy(pipe.refiner).requires_grad_(False).eval()
        self.anchor_adapter_ = copy.deepcopy(pipe.adapter).requires_grad_(False).eval()
        if lora_rank > 0 and not getattr(pipe.unet, "peft_config", None):
            lora = LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=LORA_TARGETS)
            with torch.random.fork_rng(devices=[]):  # LoRA A's init draws from the global stream: own it
                torch.manual_seed(seed)
                pipe.unet.add_adapter(lora)  # LoRA B starts at zero: the UNet is unchanged until it trains
        if gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
        for module in (pipe.prompter, pipe.unet, pipe.adapter, pipe.refiner):
            module.eval()  # no dropout: the same seed gives the same covers and the same gradients
        self.items_ = items
        self.audience_ = audience
        self.prepared_ = (
            None if pipe.prompter.kind == "vlm" else prepare_items(pipe, items.titles, list(items.images))
        )

    def _autocast(self):
        """Mixed precision of the forward passes (nothing for float32)."""
        return autocast(self.device_, self.dtype_)

    def _start(self, items: ItemSet, audience: Audience, config, output_dir: str | Path | None, resume: bool):
        """What both trainers do before their first step: set up the trainable parts, sample the "before"
        covers, build the optimizer and the random generator, and resume from a checkpoint if asked.

        Returns:
            (output folder or None, before covers or None, trainable parameters, optimizer, generator,
            checkpoint folder or None, what `_load_checkpoint` returned (Nones without a resume)).
        """
        self._setup(items, audience, config.lora_rank, config.gradient_checkpointing, config.seed)
        output = None if output_dir is None else Path(output_dir)
        before = None
        if output is not None:
            before = self._sample_covers(
                config.sample_pairs, config.seed, config.num_inference_steps, config.guidance_scale
            )
        params = self.trainable_parameters()
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
        gen = torch.Generator().manual_seed(config.seed)
        self.history_: list[dict[str, float]] = []
        self.step_ = 0
        checkpoint = None if output is None else output / CHECKPOINT_DIR
        resumed = {"extra": None, "extra_weights": None}
        if resume and checkpoint is not None and checkpoint.is_dir():
            resumed = self._load_checkpoint(checkpoint, optimizer, gen)
        return output, before, params, optimizer, gen, checkpoint, resumed

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Adapter, refiner and LoRA parameters (the only ones the optimizer sees)."""
        pipe = self.pipeline
        params = list(pipe.adapter.parameters()) + list(pipe.refiner.parameters())
        params += [p for name, p in pipe.unet.named_parameters() if "lora_" in name]
        return params

    # ------------------------------------------------------------------ batches
    def _batch(self, item_index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Prompter inputs for rows of the item set."""
        if self.prepared_ is None:
            picked = item_index.tolist()
            images = list(self.items_.images)
            return self.pipeline.prompter.prepare(
                [self.items_.titles[i] for i in picked], [images[i] for i in picked]
            )
        return {key: value[item_index.to(value.device)] for key, value in self.prepared_.items()}

    def _inputs(
        self, covers: torch.Tensor, item_index: torch.Tensor, user_index: torch.Tensor
    ) -> RewardInputs:
        return RewardInputs(
            images=covers,
            item_ids=self.items_.item_ids[item_index],
            user_ids=self.audience_.user_ids[user_index],
            titles=[self.items_.titles[i] for i in item_index.tolist()],
        )

    def _users(self, user_index: torch.Tensor) -> torch.Tensor:
        return self.audience_.vectors[user_index].to(self.pipeline.device)  # (B, user_dim)

    def _anchor_tokens(self, batch: dict[str, torch.Tensor], users: torch.Tensor | None) -> torch.Tensor:
        """Conditioning tokens (B, K, D) of the warm-up adapter and refiner (no gradient); None = generic user.

        The pipeline's own `conditioning` runs with the anchor modules swapped in, so the anchor follows
        however the pipeline composes its refiner and adapter.
        """
        pipe = self.pipeline
        adapter, refiner = pipe.adapter, pipe.refiner
        pipe.adapter, pipe.refiner = self.anchor_adapter_, self.anchor_refiner_
        try:
            with torch.no_grad():
                return pipe.conditioning(batch, users)[0]  # (B, K, D)
        finally:
            pipe.adapter, pipe.refiner = adapter, refiner

    @contextmanager
    def _anchor_unet(self) -> Iterator[None]:
        """The UNet as it was at warm-up: LoRA layers (if any) switched off inside the block."""
        unet = self.pipeline.unet
        has_lora = bool(getattr(unet, "peft_config", None))
        if has_lora:
            unet.disable_adapters()
        try:
            yield
        finally:
            if has_lora:
                unet.enable_adapters()

    @staticmethod
    def _log_terms(out: RewardOutput) -> dict[str, float]:
        logged = {"reward_total": float(out.total.detach().mean())}
        logged.update({f"reward_{k}": float(v.detach().mean()) for k, v in out.raw.items()})
        return logged

    # ------------------------------------------------------------------ outputs
    def _sample_covers(self, count: int, seed: int, steps: int, guidance: float) -> torch.Tensor:
        """Covers (count, 3, H, W) for item i and audience member i (cycling), fixed noise."""
        index = torch.arange(count)
        item_index, user_index = index % len(self.items_), index % len(self.audience_)
        with torch.no_grad(), self._autocast():
            covers = self.pipeline.generate_with_grad(
                self._batch(item_index), self._users(user_index), self.pipeline.noise_for(range(seed, seed + count)),
                steps, 0, guidance,
            )  # fmt: skip
        return covers.float().cpu()

    def _finish(self, output_dir: Path, before: torch.Tensor, seed: int, steps: int, guidance: float) -> None:
        """Writes the final pipeline and a contact sheet: warm-up covers above aligned covers."""
        self.pipeline.save_pretrained(output_dir / "pipeline")
        after = self._sample_covers(before.shape[0], seed, steps, guidance)
        contact_sheet(output_dir / "contact_sheet.png", [before, after])

    # ------------------------------------------------------------------ checkpoints
    def trained_state(self) -> dict[str, torch.Tensor]:
        """Copies of what alignment changes: adapter, refiner and LoRA tensors, by prefixed name."""
        pipe = self.pipeline
        tensors = {f"adapter.{k}": v for k, v in pipe.adapter.state_dict().items()}
        tensors.update({f"refiner.{k}": v for k, v in pipe.refiner.state_dict().items()})
        tensors.update({f"unet.{k}": v for k, v in pipe.unet.state_dict().items() if "lora_" in k})
        return {k: v.detach().clone() for k, v in tensors.items()}

    def load_trained_state(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Puts `trained_state` tensors back into the pipeline, refusing a LoRA layout that differs."""
        pipe = self.pipeline
        lora = {k[len("unet.") :]: v for k, v in tensors.items() if k.startswith("unet.")}
        own = {k for k in pipe.unet.state_dict() if "lora_" in k}
        if set(lora) != own:
            raise CheckpointError(
                f"{source} holds {len(lora)} LoRA tensors but this UNet has {len(own)}; "
                "resume with the same lora_rank"
            )
        for name, module in (("adapter", pipe.adapter), ("refiner", pipe.refiner)):
            load_state_into(module, prefixed(tensors, name), f"{source} ({name})")
        if lora:
            pipe.unet.load_state_dict(lora, strict=False)

    def _save_checkpoint(
        self,
        folder: Path,
        optimizer: torch.optim.Optimizer,
        gen: torch.Generator,
        config: dict,
        extra: dict | None = None,
        extra_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """Writes weights, optimizer, random state and step (+ a subclass's `extra` JSON and weights) as
        one set (`write_folder`): a kill mid-save leaves the previous checkpoint whole."""
        write_folder(
            folder, lambda tmp: self._write_checkpoint(tmp, optimizer, gen, config, extra, extra_weights)
        )

    def _write_checkpoint(
        self,
        folder: Path,
        optimizer: torch.optim.Optimizer,
        gen: torch.Generator,
        config: dict,
        extra: dict | None,
        extra_weights: dict[str, torch.Tensor] | None,
    ) -> None:
        save_weights(folder / "weights.safetensors", self.trained_state())
        if extra_weights is not None:
            save_weights(folder / "extra.safetensors", extra_weights)
        atomic_write(folder / "optimizer.pt", lambda tmp: torch.save(optimizer.state_dict(), tmp))
        save_weights(folder / "rng.safetensors", {"generator": gen.get_state()})
        norms = {k: [n.mean, n.var, n.count] for k, n in self.reward.norms.items()}
        state = {"step": self.step_, "history": self.history_, "reward_norms": norms, "config": config}
        write_json(folder / "state.json", state | ({"extra": extra} if extra is not None else {}))

    def _load_checkpoint(self, folder: Path, optimizer: torch.optim.Optimizer, gen: torch.Generator) -> dict:
        """Restores `_save_checkpoint`'s state after `verify_folder`; returns {"extra": ..., "extra_weights": ...}
        (None if absent)."""
        verify_folder(folder, required=CHECKPOINT_FILES)
        state = read_json(folder / "state.json")
        self.load_trained_state(load_weights(folder / "weights.safetensors"), f"checkpoint {folder}")
        if set(state["reward_norms"]) != set(self.reward.norms):
            raise CheckpointError(
                f"checkpoint {folder} was trained with rewards {sorted(state['reward_norms'])}, "
                f"this run uses {sorted(self.reward.norms)}"
            )
        for k, (mean, var, count) in state["reward_norms"].items():
            norm = self.reward.norms[k]
            norm.mean, norm.var, norm.count = mean, var, count
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        gen.set_state(load_weights(folder / "rng.safetensors")["generator"])
        self.step_ = int(state["step"])
        self.history_ = list(state["history"])
        extra_weights = folder / "extra.safetensors"
        return {
            "extra": state.get("extra"),
            "extra_weights": load_weights(extra_weights) if extra_weights.is_file() else None,
        }
