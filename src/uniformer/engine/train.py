"""The training loop: one code path from a single CPU process to ``torchrun`` on many GPU nodes.

Per optimizer step: ``accum_steps`` micro-batches (DDP gradient sync on the last one only), each under
``seed_step(seed, step, shard)`` so drop-path and Mixup draws depend on the step and shard alone; Mixup/CutMix
soft targets; forward under autocast (bf16, or fp16 with a grad scaler); the global gradient norm (clipped if
``optimizer.clip_grad``); one host synchronisation that fetches the rank-averaged loss and the norm together;
then either the optimizer step, or -- when the loss or the gradient is not finite -- a skipped step (BatchNorm
statistics restored, event logged) and, after ``trainer.max_nan_skips`` consecutive ones, a stop.

Resume is exact on CPU. The random generators need no saved state: the data order and every random draw are
functions of ``(seed, step)`` (:mod:`uniformer.engine.loader`), as is the learning rate (config + step). A
checkpoint carries model, EMA, optimizer, grad scaler, the step (which fixes the epoch and the sampler's position
in it) and the running sums behind the logs. On GPU, cuDNN autotuning and atomics make runs close but not
bitwise equal.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from uniformer.engine.build import (
    build_dataset,
    build_loss,
    build_mixup,
    build_model,
    build_optimizer,
    build_scheduler,
    has_validation,
    initial_weights,
    steps_for,
)
from uniformer.engine.checkpointing import TRAIN_FORMAT, CheckpointManager, read_training_checkpoint
from uniformer.engine.config import config_diff, learning_rate, resolve_config, save_config
from uniformer.engine.distributed import (
    all_reduce_sum,
    autocast_context,
    cleanup_distributed,
    setup_distributed,
)
from uniformer.engine.evaluate import compute_metrics, score_videos
from uniformer.engine.loader import EpochSampler, SeededItems, seed_all, seed_step
from uniformer.engine.logging import RunLogger, format_bytes, format_duration, peak_memory, progress_bar
from uniformer.models.checkpoint import CheckpointError, load_for_fine_tuning

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "train"]

logger = logging.getLogger("uniformer.engine")


class TrainingDiverged(RuntimeError):
    """Too many consecutive optimizer steps had a non-finite loss or gradient."""


@dataclass
class TrainState:
    """Counters and running sums a checkpoint must carry for the resumed run to continue identically."""

    step: int = 0  # optimizer steps done (skipped ones included): fixes the epoch and the position in it
    best_top1: float | None = None
    best_epoch: int | None = None
    nan_skips: int = 0
    consecutive_nan: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_steps: int = 0
    window_loss_sum: float = 0.0
    window_steps: int = 0
    train_seconds: float = 0.0
    clips_seen: int = 0
    skipped_videos: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    epochs: float
    best_top1: float | None
    best_epoch: int | None
    last_val_top1: float | None
    train_seconds: float
    clips_per_second: float
    peak_memory_bytes: int
    nan_skips: int
    skipped_videos: dict[str, dict[str, Any]]
    summary: str


class Trainer:
    """Builds everything a run needs from a config, then :meth:`fit` trains.

    ``model``, ``train_set`` and ``val_set`` may be given to train something else than the config's zoo model
    and datasets (the loop only needs logits out of the model and :class:`uniformer.data.VideoDataset`-style
    dict items); ``val_set=None`` builds it from the config when one is configured.
    """

    def __init__(
        self,
        config: DictConfig,
        *,
        model: nn.Module | None = None,
        train_set: torch.utils.data.Dataset | None = None,
        val_set: torch.utils.data.Dataset | None = None,
    ) -> None:
        cfg = self.cfg = resolve_config(config)
        t = cfg.trainer
        ctx = self.ctx = setup_distributed(t.device)
        autocast_context(t.precision, ctx.device)  # refuse fp16 on CPU before building anything
        if t.batch_size % (ctx.world_size * t.accum_steps):
            raise ValueError(
                f"config: trainer.batch_size={t.batch_size} (global) must be divisible by {ctx.world_size} process(es) "
                f"x trainer.accum_steps={t.accum_steps}"
            )
        self.micro_batch = t.batch_size // (ctx.world_size * t.accum_steps)
        self.out = Path(cfg.output_dir)
        self.checkpoints = CheckpointManager(self.out / "checkpoints", t.keep_last)
        self._log_handler = self._attach_log_file() if ctx.is_main else None
        try:
            self._build(model, train_set, val_set)
        except BaseException:
            self._detach_log_file()
            raise

    def _build(
        self,
        model: nn.Module | None,
        train_set: torch.utils.data.Dataset | None,
        val_set: torch.utils.data.Dataset | None,
    ) -> None:
        """Data, model, optimizer, schedule, loader, resume state, DDP wrapping, logger."""
        from uniformer.data import SkippedVideos, collate_videos
        from uniformer.models.registry import model_info

        cfg, ctx, t = self.cfg, self.ctx, self.cfg.trainer
        resume, resume_path = self._read_resume()
        if ctx.distributed:  # every process must continue from the same step, or they would drift apart
            steps: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(steps, None if resume is None else resume["trainer"]["state"]["step"])
            if len(set(steps)) > 1:
                raise ValueError(
                    f"processes found different checkpoints to resume from (steps by rank: {steps}); "
                    f"output_dir={self.out} must be on a file system every node sees"
                )

        info = model_info(cfg.model.name)
        self.train_set = train_set if train_set is not None else build_dataset(cfg, "train")
        self.val_set = val_set if val_set is not None else (build_dataset(cfg, "val") if has_validation(cfg) else None)
        num_classes = cfg.model.num_classes or getattr(self.train_set, "num_classes", 0) or info.num_classes
        self.mixup = build_mixup(cfg, num_classes, video=info.task == "video")
        if self.mixup is not None and self.micro_batch % 2:
            raise ValueError(
                "config: Mixup/CutMix pairs clips within a micro-batch, which must be even; "
                f"trainer.batch_size={t.batch_size} over {ctx.world_size} process(es) x {t.accum_steps} accumulation "
                f"step(s) gives {self.micro_batch}"
            )
        self.criterion = build_loss(cfg, soft_targets=self.mixup is not None)

        if model is None:
            seed_all(cfg.seed, 3)  # the initial weights are a function of the seed (and equal on every process)
            model = build_model(cfg, num_classes)
            path = initial_weights(cfg) if resume is None else None
            if path is not None:
                load_for_fine_tuning(model, path)
        if t.grad_checkpointing:
            if not hasattr(model, "set_grad_checkpointing"):
                raise ValueError("config: trainer.grad_checkpointing needs a model with set_grad_checkpointing()")
            model.set_grad_checkpointing(True)
        model.to(ctx.device)
        if t.sync_bn:
            if not (ctx.distributed and ctx.device.type == "cuda"):
                raise ValueError(
                    "config: trainer.sync_bn needs several CUDA processes (PyTorch's SyncBatchNorm has no CPU kernel)"
                )
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.module = model
        self.ema = None
        if t.ema_decay is not None:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=t.ema_decay)
        self.optimizer = build_optimizer(cfg, model, t.batch_size)
        self.sampler = EpochSampler(
            len(self.train_set),  # type: ignore[arg-type]
            global_batch=t.batch_size,
            micro_batch=self.micro_batch,
            world_size=ctx.world_size,
            rank=ctx.rank,
            seed=cfg.seed,
            repeated_aug=cfg.data.repeated_aug,
            subsample=cfg.data.repeated_aug_subsample,
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps, self.num_epochs = steps_for(cfg, self.steps_per_epoch)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        workers = cfg.data.num_workers
        self.loader = torch.utils.data.DataLoader(
            SeededItems(self.train_set, cfg.seed),
            batch_size=self.micro_batch,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_videos,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=workers > 0,
            generator=torch.Generator(),  # the loader must not draw from the global generator (exact resume)
        )
        self.skipped = SkippedVideos()
        self.state = TrainState()
        if resume is not None:
            self._restore(resume, resume_path)

        self.model: nn.Module = model
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if ctx.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
            self.model = self.ddp
        if ctx.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if t.compile:
            self.model = torch.compile(self.model)  # type: ignore[assignment]

        self.log = RunLogger(self.out, enabled=ctx.is_main, tensorboard=t.tensorboard)
        self.log.truncate_after(self.state.step)  # records of work lost after the checkpoint (all of them if none)
        if ctx.is_main:
            self._save_config(resume)
        logger.info(
            "%s: %d train clips, %d steps/epoch, %d steps (%d epochs), "
            "global batch %d = %d process(es) x %d x %d accumulation, peak lr %.3g, device %s, precision %s",
            cfg.model.name,
            len(self.train_set),
            self.steps_per_epoch,
            self.total_steps,
            self.num_epochs,  # type: ignore[arg-type]
            t.batch_size,
            ctx.world_size,
            self.micro_batch,
            t.accum_steps,
            learning_rate(cfg, t.batch_size),
            ctx.device,
            t.precision,
        )

    # ------------------------------------------------------------------------------------------------
    # set-up helpers

    def _attach_log_file(self) -> logging.Handler:
        """Copy the run's log (INFO and up, whatever the caller's logging setup) to ``train.log``."""
        self.out.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(self.out / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        package = logging.getLogger("uniformer")
        package.addHandler(handler)
        self._saved_log_level = package.level
        if package.getEffectiveLevel() > logging.INFO:
            package.setLevel(logging.INFO)
        return handler

    def _detach_log_file(self) -> None:
        if self._log_handler is not None:
            package = logging.getLogger("uniformer")
            package.removeHandler(self._log_handler)
            package.setLevel(self._saved_log_level)
            self._log_handler.close()
            self._log_handler = None

    def _read_resume(self) -> tuple[dict[str, Any] | None, Path | None]:
        """The checkpoint to continue from (``trainer.resume``); for ``auto`` an unreadable newest file falls
        back to the one before it, with a warning."""
        existing = self.checkpoints.checkpoints()
        if self.cfg.trainer.resume is None and existing:
            raise ValueError(
                f"output_dir={self.out} already holds a run (latest checkpoint {existing[-1][1].name}); pass "
                "trainer.resume=auto to continue it, or choose another output_dir "
                "(a new run would prune its checkpoints)"
            )
        candidates = self.checkpoints.resume_candidates(self.cfg.trainer.resume)
        for path in candidates:
            try:
                return read_training_checkpoint(path), path
            except ValueError as exc:
                if self.cfg.trainer.resume != "auto":
                    raise
                logger.warning("cannot resume from %s (%s); trying an older checkpoint", path, exc)
        if self.cfg.trainer.resume == "auto":
            logger.info("trainer.resume=auto: no checkpoint in %s, starting a new run", self.checkpoints.directory)
        return None, None

    def _restore(self, state: dict[str, Any], path: Path | None) -> None:
        saved = state["trainer"]
        if saved["steps_per_epoch"] != self.steps_per_epoch or saved["global_batch"] != self.cfg.trainer.batch_size:
            raise ValueError(
                f"{path}: cannot resume: the checkpoint ran {saved['steps_per_epoch']} steps/epoch at global batch "
                f"{saved['global_batch']}, this config gives {self.steps_per_epoch} at {self.cfg.trainer.batch_size} "
                "(trainer.batch_size, data.repeated_aug or the training list changed)"
            )
        try:
            self.module.load_state_dict(state["model"])
            if self.ema is not None:
                if state.get("model_ema") is None:
                    raise ValueError("trainer.ema_decay is set but the checkpoint has no EMA weights")
                self.ema.module.load_state_dict(state["model_ema"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as exc:  # another model or optimizer setup than this config's
            raise CheckpointError(f"{path}: cannot resume with this config: {str(exc).splitlines()[0]}") from None
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.state = TrainState(**saved["state"])
        if self.ctx.is_main:  # the checkpoint holds every process's reports; rank 0 carries them on
            _merge_skipped(self.skipped, self.state.skipped_videos)
        logger.info(
            "resumed from %s at step %d (epoch %d)", path, self.state.step, self.state.step // self.steps_per_epoch + 1
        )

    def _save_config(self, resume: dict[str, Any] | None) -> None:
        if resume is not None:
            changed = [d for d in config_diff(resume["config"], self.cfg) if not d.startswith("trainer.resume:")]
            if changed:
                logger.warning("resuming with a config that differs from the checkpoint's: %s", "; ".join(changed))
        save_config(self.cfg, self.out / "config.yaml")

    # ------------------------------------------------------------------------------------------------
    # the loop

    def fit(self) -> TrainResult:
        """Train until ``trainer.max_epochs`` (or ``max_steps``), validating and checkpointing each epoch."""
        try:
            while self.state.step < self.total_steps:
                epoch = self.state.step // self.steps_per_epoch
                started = time.perf_counter()
                self._train_epoch(epoch)
                self._end_epoch(epoch, time.perf_counter() - started)
            return self._finish()
        finally:
            self.log.close()
            self._detach_log_file()

    def _train_epoch(self, epoch: int) -> None:
        spe = self.steps_per_epoch
        self.sampler.set_epoch(epoch, self.state.step - epoch * spe)
        end = min((epoch + 1) * spe, self.total_steps)
        bar = progress_bar(
            spe,
            initial=self.state.step - epoch * spe,
            desc=f"epoch {epoch + 1}/{self.num_epochs}",
            enabled=self.cfg.trainer.progress and self.ctx.is_main,
        )
        batches = iter(self.loader)
        window_start, data_seconds = time.perf_counter(), 0.0
        try:
            while self.state.step < end:
                started = time.perf_counter()
                loss, grad_norm, finite, waited = self._step(batches)
                self.state.train_seconds += time.perf_counter() - started
                data_seconds += waited
                self.state.clips_seen += self.cfg.trainer.batch_size
                if finite:
                    self.state.epoch_loss_sum += loss
                    self.state.epoch_loss_steps += 1
                    self.state.window_loss_sum += loss
                    self.state.window_steps += 1
                bar.update()
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self._lr():.3g}", refresh=False)
                step = self.state.step
                if step % self.cfg.trainer.log_every_steps == 0:
                    elapsed = time.perf_counter() - window_start
                    self._log_window(epoch, grad_norm, elapsed, data_seconds)
                    window_start, data_seconds = time.perf_counter(), 0.0
                every = self.cfg.trainer.checkpoint_every_steps
                if every and step % every == 0 and step % spe and step < self.total_steps:
                    self._save_checkpoint(best=False)
        finally:
            bar.close()

    def _log_window(self, epoch: int, grad_norm: float, elapsed: float, data_seconds: float) -> None:
        state = self.state
        steps = self.cfg.trainer.log_every_steps
        self.log.log(
            "step",
            step=state.step,
            epoch=epoch,
            loss=state.window_loss_sum / state.window_steps if state.window_steps else float("nan"),
            lr=self._lr(),
            grad_norm=grad_norm,
            clips_per_s=steps * self.cfg.trainer.batch_size / elapsed if elapsed > 0 else 0.0,
            data_wait=data_seconds / elapsed if elapsed > 0 else 0.0,
        )
        state.window_loss_sum, state.window_steps = 0.0, 0

    def _lr(self) -> float:
        return max(group["lr"] for group in self.optimizer.param_groups)

    def _step(self, batches: Iterator[dict[str, Any]]) -> tuple[float, float, bool, float]:
        """One optimizer step over ``accum_steps`` micro-batches; returns loss, grad norm, applied?, data wait."""
        cfg, ctx, state = self.cfg, self.ctx, self.state
        accum = cfg.trainer.accum_steps
        self.model.train()
        self.scheduler.step_update(state.step)
        norms = list(self.module.buffers())  # running statistics and counters, restored if the step is dropped
        saved_norms = [b.detach().clone() for b in norms]
        total = torch.zeros((), device=ctx.device)
        waited = 0.0
        for micro in range(accum):
            tic = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - tic
            self.skipped.update(batch)
            seed_step(cfg.seed, state.step, ctx.rank * accum + micro)
            inputs = batch["video"].to(ctx.device, non_blocking=True)
            targets = batch["label"].to(ctx.device, non_blocking=True)
            if self.mixup is not None:
                inputs, targets = self.mixup(inputs, targets)
            sync = self.ddp.no_sync() if self.ddp is not None and micro < accum - 1 else nullcontext()
            with sync:
                with autocast_context(cfg.trainer.precision, ctx.device):
                    logits = self.model(inputs)
                if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                    raise ValueError(
                        f"the model must return logits (B, classes) in training mode; got {type(logits).__name__}"
                    )
                loss = self.criterion(logits.float(), targets)
                scaled = loss / accum
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total += loss.detach()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.module.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if cfg.optimizer.clip_grad is not None:
            torch.nn.utils.clip_grads_with_norm_(params, cfg.optimizer.clip_grad, grad_norm, foreach=True)
        all_reduce_sum(total, ctx)
        loss_value, norm_value = torch.stack([total / (accum * ctx.world_size), grad_norm.to(total)]).tolist()
        finite = math.isfinite(loss_value) and (self.scaler is not None or math.isfinite(norm_value))
        if finite:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            state.consecutive_nan = 0
        else:
            self._skip_step(norms, saved_norms, loss_value, norm_value)
        self.optimizer.zero_grad(set_to_none=True)
        if finite and self.ema is not None:
            self.ema.update(self.module, step=state.step + 1)
        state.step += 1
        if state.consecutive_nan > cfg.trainer.max_nan_skips:
            self.log.plot()
            last = self.checkpoints.checkpoints()
            raise TrainingDiverged(
                f"stopped at step {state.step}: {state.consecutive_nan} consecutive steps had a non-finite loss or "
                f"gradient (trainer.max_nan_skips={cfg.trainer.max_nan_skips}); last checkpoint: "
                f"{last[-1][1] if last else 'none'}. Try trainer.precision=bf16 or fp32, a lower learning rate, "
                "or optimizer.clip_grad"
            )
        return loss_value, norm_value, finite, waited

    def _skip_step(self, norms: list[torch.Tensor], saved: list[torch.Tensor], loss: float, grad_norm: float) -> None:
        """Drop a step whose loss or gradient is not finite, and the BatchNorm statistics its forward pass changed."""
        if self.scaler is not None:
            self.scaler.update()  # closes the step opened by unscale_ (and lowers the scale)
        with torch.no_grad():
            for buffer, value in zip(norms, saved, strict=True):
                buffer.copy_(value)
        self.state.nan_skips += 1
        self.state.consecutive_nan += 1
        step = self.state.step + 1  # numbered like the "step" records: the count of steps once this one is done
        logger.warning(
            "step %d skipped: loss %s, gradient norm %s (%d in a row)",
            step,
            loss,
            grad_norm,
            self.state.consecutive_nan,
        )
        self.log.log("nan_skip", step=step, loss=loss, grad_norm=grad_norm, consecutive=self.state.consecutive_nan)

    # ------------------------------------------------------------------------------------------------
    # epoch end, checkpoints, summary

    def _end_epoch(self, epoch: int, seconds: float) -> None:
        state = self.state
        last = state.step >= self.total_steps
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": state.step,
            "train_loss": state.epoch_loss_sum / state.epoch_loss_steps if state.epoch_loss_steps else float("nan"),
            "lr": self._lr(),
            "epoch_seconds": seconds,
        }
        best = False
        if self.val_set is not None and ((epoch + 1) % self.cfg.trainer.eval_every_epochs == 0 or last):
            metrics = self._validate(self.module)
            record.update(
                val_top1=metrics.top1,
                val_top5=metrics.top5,
                val_videos=metrics.num_scored,
                val_failed=metrics.num_failed,
            )
            if self.ema is not None:
                record["val_ema_top1"] = self._validate(self.ema.module).top1
            best = state.best_top1 is None or metrics.top1 > state.best_top1
            if best:
                state.best_top1, state.best_epoch = metrics.top1, epoch
        state.epoch_loss_sum, state.epoch_loss_steps = 0.0, 0
        self.log.log("epoch", **record)
        self.log.plot()
        self._save_checkpoint(best=best)
        val = f", val top-1 {record['val_top1']:.2f}%" if "val_top1" in record else ""
        logger.info(
            "epoch %d/%d: train loss %.4f%s (%s)",
            epoch + 1,
            self.num_epochs,
            record["train_loss"],
            val,
            format_duration(seconds),
        )

    def _validate(self, model: nn.Module) -> Any:
        if self.ctx.distributed:  # BatchNorm statistics differ per process; evaluate rank 0's everywhere
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        scores = score_videos(
            model,
            self.val_set,
            batch_size=self.cfg.trainer.val_batch_size or self.micro_batch,
            ctx=self.ctx,
            precision=self.cfg.trainer.precision,
            num_workers=self.cfg.data.num_workers,
            progress=self.cfg.trainer.progress,
        )
        return compute_metrics(scores)

    def _all_skipped(self) -> Any:
        """Unreadable videos reported to any process (a collective call under DDP)."""
        from uniformer.data import SkippedVideos

        if not self.ctx.distributed:
            return self.skipped
        parts: list[Any] = [None] * self.ctx.world_size
        dist.all_gather_object(parts, self.skipped.to_dict())
        merged = SkippedVideos()
        for part in parts:
            _merge_skipped(merged, part)
        return merged

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": TRAIN_FORMAT,
            "version": 1,
            "model": self.module.state_dict(),
            "model_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "trainer": {
                "state": asdict(self.state),
                "steps_per_epoch": self.steps_per_epoch,
                "global_batch": self.cfg.trainer.batch_size,
                "world_size": self.ctx.world_size,
            },
            "config": OmegaConf.to_container(self.cfg, resolve=True),
        }

    def _save_checkpoint(self, best: bool) -> None:
        """Every process calls this (the skipped-video reports are gathered); rank 0 writes."""
        skipped = self._all_skipped()
        if self.ctx.is_main:
            self.state.skipped_videos = skipped.to_dict()
            self.checkpoints.save(self._checkpoint_state(), self.state.step, best=best)

    def _finish(self) -> TrainResult:
        state, ctx = self.state, self.ctx
        memory, memory_kind = peak_memory(ctx.device)
        throughput = state.clips_seen / state.train_seconds if state.train_seconds else 0.0
        epochs = state.step / self.steps_per_epoch
        last_val = next((r.get("val_top1") for r in reversed(self.log.records) if r["kind"] == "epoch"), None)
        best = (
            f"best val top-1 {state.best_top1:.2f}% (epoch {state.best_epoch + 1})"
            if state.best_top1 is not None
            else "no validation set"
        )
        skipped = self._all_skipped()
        notes = []
        if state.nan_skips:
            notes.append(f"{state.nan_skips} step(s) skipped for non-finite loss")
        if len(skipped):
            notes.append(f"{len(skipped)} unreadable video(s) replaced (see train.log)")
            logger.warning(skipped.summary())
        summary = (
            f"trained {state.step} steps ({epochs:.2f} epochs) in {format_duration(state.train_seconds)}: {best}; "
            f"{throughput:.1f} clips/s; peak {memory_kind} {format_bytes(memory)}"
            + (f"; {'; '.join(notes)}" if notes else "")
            + f"; output in {self.out}"
        )
        self.log.log(
            "summary",
            step=state.step,
            best_top1=state.best_top1,
            best_epoch=state.best_epoch,
            train_seconds=state.train_seconds,
            clips_per_s=throughput,
            peak_memory_bytes=memory,
            nan_skips=state.nan_skips,
            skipped_videos=skipped.to_dict(),
        )
        self.log.plot()
        return TrainResult(
            output_dir=self.out,
            steps=state.step,
            epochs=epochs,
            best_top1=state.best_top1,
            best_epoch=state.best_epoch,
            last_val_top1=last_val,
            train_seconds=state.train_seconds,
            clips_per_second=throughput,
            peak_memory_bytes=memory,
            nan_skips=state.nan_skips,
            skipped_videos=skipped.to_dict(),
            summary=summary,
        )


def _merge_skipped(target: Any, entries: dict[str, dict[str, Any]]) -> None:
    """Add ``{path: {"reason", "count"}}`` reports to a :class:`uniformer.data.SkippedVideos`."""
    for path, entry in entries.items():
        target.reasons.setdefault(path, entry["reason"])
        target.occurrences[path] += entry["count"]


def train(
    config: DictConfig,
    *,
    model: nn.Module | None = None,
    train_set: torch.utils.data.Dataset | None = None,
    val_set: torch.utils.data.Dataset | None = None,
) -> TrainResult:
    """Train as ``config`` says (see :class:`Trainer`); leaves the process group afterwards."""
    try:
        return Trainer(config, model=model, train_set=train_set, val_set=val_set).fit()
    finally:
        cleanup_distributed()
