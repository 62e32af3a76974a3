"""``geosynth train-unet``: the U-Net that scores synthesized images by segmenting them.

Adam with betas (0.9, 0.999), learning rate 2e-4 (weight decay 5e-4 as in the
code published with the paper), cross entropy over the GeoNRW classes with
class 0 (unlabelled) ignored (or focal loss, optionally class-weighted:
:mod:`geosynth.ml.training.seg_losses`), 100 epochs; ``--extra-store`` mixes a second
store's tiles into every epoch (:mod:`geosynth.ml.data.mixing`). After every epoch the validation
split is segmented (centre crops) and its mIoU reported: the IoU of every
class 1..K-1 that occurs in the target or the prediction, averaged. The
prediction never picks class 0. Distribution, checkpoints, resuming and
progress are the shared machinery of :mod:`geosynth.ml.training.trainer`.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from geosynth.errors import DataError
from geosynth.ml.data.datasets import SynthesisDataset
from geosynth.ml.data.mixing import MixedDataset, check_compatible_stores
from geosynth.ml.metrics import confusion_matrix, segmentation_scores
from geosynth.ml.networks.configs import UNetConfig
from geosynth.ml.networks.unet import build_unet
from geosynth.ml.training import trainer
from geosynth.ml.training.config import UNetRunConfig
from geosynth.ml.training.distributed import (
    DistContext,
    ShardSampler,
    all_reduce,
    per_rank_batch,
    prepare,
    wrap_ddp,
)
from geosynth.ml.training.seg_losses import SegmentationLoss, class_weights, split_histogram
from geosynth.ml.training.visual import colorize, grid, image_to_uint8, palette
from geosynth.store import open_store

log = logging.getLogger(__name__)

TARGET = "seg"
IGNORE = 0  # unlabelled


def one_hot_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The paper's loss: BCE with logits of ``(B, K, H, W)`` against the one-hot ``(B, H, W)``
    targets, class 0 included, averaged over every element."""
    one_hot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()  # (B, K, H, W)
    return F.binary_cross_entropy_with_logits(logits.float(), one_hot)


class UNetTask(trainer.Task):
    """One U-Net, its optimizer, a cross-entropy step and the validation mIoU."""

    name = "unet"

    def __init__(self, config: UNetRunConfig, ctx: DistContext):
        super().__init__(config, ctx)
        store = open_store(config.store, storage_options=config.storage_options)
        self.num_classes = store.num_classes
        self.colors = palette(store.classes)
        self.dataset = self._dataset(config.split, train=True, crop=config.crop)
        if config.extra_store:
            self.dataset = self._mixed(store, self.dataset)
        self.loss_fn = self._loss(store)
        self.val_crop = config.val_crop or (min(store.tile_shape) // 16) * 16
        self.val_dataset = None
        if config.val_split:
            try:
                self.val_dataset = self._dataset(config.val_split, train=False, crop=self.val_crop)
            except DataError as exc:
                raise DataError(f"validation: {exc}; --val-split none trains without it") from None
            if config.val_tiles is not None and len(self.val_dataset) > config.val_tiles:
                self.val_dataset = Subset(self.val_dataset, range(config.val_tiles))
        self.u_config = UNetConfig(
            in_channels=self.dataset.channels[config.input],
            num_classes=self.num_classes,
            base_channels=config.base_channels,
            norm=config.norm,
            input_range=config.image_range,
        )
        self.net_plain = prepare(build_unet(self.u_config), ctx, sync_bn=True)  # --norm batch
        run = trainer.prepare_network(self.net_plain, config)
        self.net = trainer.maybe_compile(wrap_ddp(run, ctx), config.compile)
        self.opt = trainer.adam(
            self.net_plain.parameters(), config.lr, config.betas, ctx, config.weight_decay
        )
        self._last: tuple | None = None

    def _loss(self, store) -> SegmentationLoss:
        """``--loss`` with ``--class-weights`` from the training split's class histogram."""
        cfg = self.config
        weight = None
        if cfg.class_weights != "none":
            values = class_weights(split_histogram(store, cfg.split), cfg.class_weights)
            log.info("class weights (%s): %s", cfg.class_weights, np.round(values, 3).tolist())
            weight = torch.as_tensor(values, dtype=torch.float32, device=self.ctx.device)
        return SegmentationLoss(cfg.loss, weight, cfg.focal_gamma)

    def _mixed(self, store, main: SynthesisDataset) -> MixedDataset:
        """``main`` with a ``--mix`` share of every epoch drawn from ``--extra-store``."""
        cfg = self.config
        extra_store = open_store(cfg.extra_store, storage_options=cfg.storage_options)
        check_compatible_stores(store, extra_store, (cfg.input, TARGET))
        extra = self._dataset(cfg.split, train=True, crop=cfg.crop, store=cfg.extra_store)
        n = len(main)
        extra.length = max(n, len(extra.indices))  # can give a whole epoch, and every tile
        log.info("mixing %s: %.0f%% of %d samples per epoch", cfg.extra_store, 100 * cfg.mix, n)
        return MixedDataset(main, extra, cfg.mix, cfg.seed, n)

    def _dataset(
        self, split: str, train: bool, crop: int, store: str | None = None
    ) -> SynthesisDataset:
        cfg = self.config
        return SynthesisDataset(
            store or cfg.store,
            split,
            inputs=(cfg.input,),
            output=TARGET,
            crop=crop,
            resize=cfg.resize if train else None,
            flip=train,
            seed=cfg.seed,
            train=train,
            one_hot=False,
            samples_per_epoch=cfg.samples_per_epoch if train else None,
            storage_options=cfg.storage_options,
        )

    # ------------------------------------------------------------------ Task
    def train_dataset(self) -> SynthesisDataset:
        return self.dataset

    def sample_dataset(self) -> SynthesisDataset:
        # centre crops of the training size: whole validation tiles would cost seconds per epoch
        split = self.config.val_split or self.config.split
        return self._dataset(split, train=False, crop=self.config.crop)

    def models(self) -> dict:
        return {"unet": (self.u_config.to_dict(), self.net_plain)}

    def optimizers(self) -> dict:
        return {"unet": self.opt}

    def _inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = trainer.to_device(batch[self.config.input], self.ctx, self.config.channels_last)
        return x, batch[TARGET].to(self.ctx.device)  # (B, C, H, W), (B, H, W) int64

    def train_step(self, batch: dict) -> dict[str, torch.Tensor]:
        x, target = self._inputs(batch)
        with trainer.autocast(
            self.ctx, self.config.amp, cpu=True
        ):  # bf16 where the CPU has it: ~1.7x
            logits = self.net(x).logits.float()  # (B, K, H, W); the loss in fp32
        loss = self.loss_fn(logits, target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ctx.is_main and self.config.image_every and self.config.samples:
            k = min(self.config.samples, x.shape[0])
            self._last = (x[:k].detach(), logits[:k].detach(), target[:k])
        return {self.config.loss: loss.detach()}

    def _predict(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, 1:].argmax(1) + 1  # (B, H, W), never the unlabelled class

    def _grid(self, x, logits, target) -> torch.Tensor:
        columns = [image_to_uint8(x), colorize(self._predict(logits), self.colors)]
        return grid([*columns, colorize(target, self.colors)], ["input", "predicted", "labels"])

    def step_images(self) -> torch.Tensor | None:
        return None if self._last is None else self._grid(*self._last)

    @torch.no_grad()
    def sample_grid(self, batch: dict) -> torch.Tensor:
        x, target = self._inputs(batch)
        self.net_plain.eval()
        try:
            with trainer.autocast(self.ctx, self.config.amp):
                logits = self.net_plain(x).logits
        finally:
            self.net_plain.train()
        return self._grid(x, logits, target)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """mIoU, pixel accuracy and loss of the validation split, sharded over the ranks."""
        if self.val_dataset is None:
            return {}
        loader = DataLoader(
            self.val_dataset,
            batch_size=per_rank_batch(self.config.batch_size, self.ctx),
            sampler=ShardSampler(len(self.val_dataset), self.ctx),
            num_workers=self.config.workers,
        )
        k = self.num_classes
        conf = torch.zeros(k, k, dtype=torch.int64, device=self.ctx.device)
        loss_sum = torch.zeros(2, dtype=torch.float64, device=self.ctx.device)  # sum, pixels
        self.net_plain.eval()
        try:
            for batch in loader:
                x, target = self._inputs(batch)
                with trainer.autocast(self.ctx, self.config.amp):
                    logits = self.net_plain(x).logits.float()
                conf += confusion_matrix(self._predict(logits), target, k)
                if self.config.loss == "bce":  # the element mean, weighted by the elements
                    bce, n = one_hot_bce(logits, target).double(), logits.numel()
                    loss_sum += torch.stack([bce * n, torch.full_like(bce, n)])
                else:
                    ce = F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
                    loss_sum += torch.stack([ce.double(), (target != IGNORE).sum().double()])
        finally:
            self.net_plain.train()
        all_reduce(conf, self.ctx)
        all_reduce(loss_sum, self.ctx)
        scores = segmentation_scores(conf.cpu().numpy())
        return {
            "miou": scores["miou"],
            "pixel_acc": scores["pixel_acc"],
            "loss": float(loss_sum[0] / loss_sum[1].clamp_min(1)),
        }


def train_unet(
    config: UNetRunConfig, *, resume: bool = False, progress: trainer.ProgressCallback | None = None
) -> trainer.TrainResult:
    """Train the U-Net scorer as ``config`` says (under torchrun: distributed)."""
    return trainer.run_training(config, UNetTask, resume=resume, progress=progress)
