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
import signal
import threading
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
from timm.utils import ModelEmaV3

from uniformer.data import SkippedInputs
from uniformer.engine.build import (
    build_optimizer,
    build_scheduler,
    initial_weights,
    steps_for,
)
from uniformer.engine.checkpointing import CheckpointManager, RunLock, remove_stale_temporaries
from uniformer.engine.config import config_diff, learning_rate, resolve_config, save_config, task_of
from uniformer.engine.evaluate import run_evaluation
from uniformer.engine.loader import BatchPlan, EpochSampler, SeededItems
from uniformer.engine.logging import RunLogger, format_bytes, format_duration, peak_memory, progress_bar
from uniformer.models.checkpoint import TRAIN_FORMAT, CheckpointError, CheckpointFile, load_for_fine_tuning
from uniformer.runtime import autocast_context, cleanup_distributed, seed_all, seed_step, setup_distributed
from uniformer.tasks import Metrics

__all__ = ["TrainResult", "Trainer", "TrainingDiverged", "TrainingInterrupted", "train"]

logger = logging.getLogger("uniformer.engine")


class TrainingDiverged(RuntimeError):
    """Too many consecutive optimizer steps had a non-finite loss or gradient."""


class TrainingInterrupted(RuntimeError):
    """SIGTERM or Ctrl-C stopped the run after it wrote a checkpoint; ``signal`` is the signal's number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signal = signum


@dataclass
class _StepAbandoned(Exception):
    """An interrupted step whose data could no longer be read; its effects were undone."""


@dataclass
class TrainState:
    """Counters and running sums a checkpoint must carry for the resumed run to continue identically."""

    step: int = 0  # optimizer steps done (skipped ones included): fixes the epoch and the position in it
    best_metric: float | None = None
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
    metric: str  # the task's primary validation metric, e.g. "top1"
    best_metric: float | None
    best_epoch: int | None
    last_val_metric: float | None
    train_seconds: float
    clips_per_second: float
    peak_memory_bytes: int
    nan_skips: int
    skipped_videos: dict[str, dict[str, Any]]
    summary: str


class Trainer:
    """Builds everything a run needs from a config and its task, then :meth:`fit` trains.

    ``model``, ``train_set`` and ``val_set`` may be given to train something else than the config's zoo model
    and datasets (the loop only needs what the task's objective and metric take); ``val_set=None`` builds it
    from the config when one is configured.
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
        self.task = task_of(cfg)
        t = cfg.trainer
        ctx = self.ctx = setup_distributed(t.device)
        autocast_context(t.precision, ctx.device)  # refuse fp16 on CPU before building anything
        self.plan = BatchPlan.of(cfg, ctx.world_size)
        self.out = Path(cfg.output_dir)
        self.checkpoints = CheckpointManager(self.out / "checkpoints", t.keep_last)
        self.lock = RunLock(self.out)
        self._interrupt: int | None = None  # the signal this process received
        self._stop = False  # every process agreed to stop (the flag travels in the step's all-reduce)
        if ctx.is_main:
            self.lock.acquire()  # before anything is read or written in the folder
        self._log_handler = self._attach_log_file() if ctx.is_main else None
        try:
            if ctx.is_main:
                for folder in (self.out, self.checkpoints.directory):
                    remove_stale_temporaries(folder)
            self._build(model, train_set, val_set)
        except BaseException:
            self._detach_log_file()
            self.lock.release()
            raise

    def _build(
        self,
        model: nn.Module | None,
        train_set: torch.utils.data.Dataset | None,
        val_set: torch.utils.data.Dataset | None,
    ) -> None:
        """Data, model, optimizer, schedule, loader, resume state, DDP wrapping, logger."""
        cfg, ctx, t, task = self.cfg, self.ctx, self.cfg.trainer, self.task
        resume = self._find_resume()
        if ctx.distributed:  # every process must continue from the same step, or they would drift apart
            steps = ctx.all_gather_object(None if resume is None else resume.container["trainer"]["state"]["step"])
            if len(set(steps)) > 1:
                raise ValueError(
                    f"processes found different checkpoints to resume from (steps by rank: {steps}); "
                    f"output_dir={self.out} must be on a file system every node sees"
                )

        self.train_set = train_set if train_set is not None else task.build_dataset(cfg, "train")
        self.val_set = (
            val_set if val_set is not None else (task.build_dataset(cfg, "val") if task.has_validation(cfg) else None)
        )
        num_outputs = task.num_outputs(cfg, self.train_set)
        self.objective = task.objective(cfg, num_outputs, self.plan.micro_batch)

        if model is None:
            seed_all(cfg.seed, 3)  # the initial weights are a function of the seed (and equal on every process)
            model = task.build_model(cfg, num_outputs)
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
        self.ema = ModelEmaV3(model, decay=t.ema_decay) if t.ema_decay is not None else None
        self.optimizer = build_optimizer(cfg, model, self.plan.global_batch)
        self.sampler = EpochSampler(
            len(self.train_set),  # type: ignore[arg-type]
            self.plan,
            rank=ctx.rank,
            seed=cfg.seed,
            repeated_aug=OmegaConf.select(cfg, "data.repeated_aug", default=1),
            subsample=OmegaConf.select(cfg, "data.repeated_aug_subsample", default=False),
            groups=task.batch_groups(cfg, self.train_set),
            drop_last=t.drop_last,
            item_multiple=self.objective.item_multiple,
        )
        self.steps_per_epoch = self.sampler.steps_per_epoch
        self.total_steps, self.num_epochs = steps_for(cfg, self.steps_per_epoch)
        self.scheduler = build_scheduler(cfg, self.optimizer, self.total_steps, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        self.workers = OmegaConf.select(cfg, "data.num_workers", default=0)
        self.loader = torch.utils.data.DataLoader(
            SeededItems(self.train_set, cfg.seed),
            batch_sampler=self.sampler,
            num_workers=self.workers,
            collate_fn=task.collate,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=self.workers > 0,
            generator=torch.Generator(),  # the loader must not draw from the global generator (exact resume)
        )
        self.skipped = SkippedInputs(getattr(self.train_set, "noun", "input"))
        self.state = TrainState()
        if resume is not None:
            self._restore(resume)

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
            "%s: %d training items, %d steps/epoch, %d steps (%d epochs), %s, peak lr %.3g, device %s, precision %s",
            cfg.model.name,
            len(self.train_set),  # type: ignore[arg-type]
            self.steps_per_epoch,
            self.total_steps,
            self.num_epochs,
            self.plan,
            learning_rate(cfg, self.plan.global_batch),
            ctx.device,
            t.precision,
        )
        if self.sampler.left_out:
            logger.info(
                "%d item(s) per epoch do not fill a last batch and are left out, a different set each epoch "
                "(trainer.drop_last=false keeps every item)",
                self.sampler.left_out,
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

    def _find_resume(self) -> CheckpointFile | None:
        """The checkpoint to continue from (``trainer.resume``). A new run refuses a folder holding another
        run's files; ``auto`` with nothing to resume starts afresh only when no finished work would be lost."""
        resume = self.cfg.trainer.resume
        found = self.checkpoints.find_resume(resume, set_aside=self.ctx.is_main)
        if found is None:
            others = [p.name for p in (self.out / "metrics.jsonl", self.checkpoints.best_path) if p.exists()]
            if resume is None and (others or (self.out / "config.yaml").exists()):
                raise ValueError(
                    f"output_dir={self.out} already holds a run ({', '.join(others or ['config.yaml'])}); pass "
                    "trainer.resume=auto to continue it, or choose another output_dir"
                )
            if resume == "auto":
                if self.checkpoints.best_path.exists():
                    raise CheckpointError(
                        f"trainer.resume=auto: {self.checkpoints.directory} has best.pt but no step checkpoint to "
                        "continue from; nothing was changed. Train into another output_dir"
                    )
                logger.info("trainer.resume=auto: no checkpoint in %s, starting a new run", self.checkpoints.directory)
        return found

    def _restore(self, file: CheckpointFile) -> None:
        saved, path = file.container["trainer"], file.path
        if saved["steps_per_epoch"] != self.steps_per_epoch or saved["global_batch"] != self.plan.global_batch:
            raise ValueError(
                f"{path}: cannot resume: the checkpoint ran {saved['steps_per_epoch']} steps/epoch at global batch "
                f"{saved['global_batch']}, this config gives {self.steps_per_epoch} at {self.plan.global_batch} "
                "(trainer.batch_size, data.repeated_aug or the training list changed)"
            )
        try:
            self.module.load_state_dict(file.container["model"])
            if self.ema is not None:
                self.ema.module.load_state_dict(file.ema_state_dict())
            self.optimizer.load_state_dict(file.container["optimizer"])
        except (RuntimeError, ValueError) as exc:  # another model or optimizer setup than this config's
            raise CheckpointError(f"{path}: cannot resume with this config: {str(exc).splitlines()[0]}") from None
        if self.scaler is not None and file.container.get("scaler"):
            self.scaler.load_state_dict(file.container["scaler"])
        self.state = TrainState(**saved["state"])
        if self.ctx.is_main:  # the checkpoint holds every process's reports; rank 0 carries them on
            _merge_skipped(self.skipped, self.state.skipped_videos)
        logger.info(
            "resumed from %s at step %d (epoch %d)", path, self.state.step, self.state.step // self.steps_per_epoch + 1
        )

    def _save_config(self, resume: CheckpointFile | None) -> None:
        if resume is not None:
            changed = [
                d for d in config_diff(resume.container["config"], self.cfg) if not d.startswith("trainer.resume:")
            ]
            if changed:
                logger.warning("resuming with a config that differs from the checkpoint's: %s", "; ".join(changed))
        save_config(self.cfg, self.out / "config.yaml")

    # ------------------------------------------------------------------------------------------------
    # the loop

    def fit(self) -> TrainResult:
        """Train until ``trainer.max_epochs`` (or ``max_steps``), validating and checkpointing each epoch.

        SIGTERM (a scheduler's preemption, ``timeout``) and Ctrl-C end the current step (or abandon it when its
        data can no longer be read), write a checkpoint and raise :class:`TrainingInterrupted`; a second Ctrl-C
        stops at once.
        """
        restore = self._catch_signals()
        try:
            while self.state.step < self.total_steps:
                epoch = self.state.step // self.steps_per_epoch
                started = time.perf_counter()
                self._train_epoch(epoch)
                if self.state.step % self.steps_per_epoch == 0 or self.state.step >= self.total_steps:
                    self._end_epoch(epoch, time.perf_counter() - started)
                if self._stop:
                    self._stop_interrupted()
            return self._finish()
        finally:
            restore()
            self.log.close()
            self._detach_log_file()
            self.lock.release()

    def _catch_signals(self) -> Any:
        """Install the SIGTERM / SIGINT handlers (main thread only); returns what restores the previous ones."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

        def handle(signum: int, frame: Any) -> None:
            if self._interrupt is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            self._interrupt = signum
            logger.warning("%s received: stopping after this step", signal.Signals(signum).name)

        for sig in previous:
            signal.signal(sig, handle)
        return lambda: [signal.signal(sig, handler) for sig, handler in previous.items()]

    def _stop_interrupted(self) -> None:
        """Checkpoint the last completed step (unless the epoch end just did) and raise."""
        last = self.checkpoints.checkpoints()
        if not last or last[-1][0] != self.state.step:
            self._save_checkpoint(best=False)
        signum = self._interrupt or signal.SIGTERM
        raise TrainingInterrupted(
            f"interrupted at step {self.state.step} ({signal.Signals(signum).name}); continue with trainer.resume=auto",
            signum,
        )

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
            while self.state.step < end and not self._stop:
                started = time.perf_counter()
                try:
                    loss, grad_norm, finite, waited = self._step(batches)
                except _StepAbandoned:
                    self._stop = True
                    return
                self.state.train_seconds += time.perf_counter() - started
                data_seconds += waited
                self.state.clips_seen += self.plan.global_batch
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
            clips_per_s=steps * self.plan.global_batch / elapsed if elapsed > 0 else 0.0,
            data_wait=data_seconds / elapsed if elapsed > 0 else 0.0,
        )
        state.window_loss_sum, state.window_steps = 0.0, 0

    def _lr(self) -> float:
        return max(group["lr"] for group in self.optimizer.param_groups)

    def _step(self, batches: Iterator[dict[str, Any]]) -> tuple[float, float, bool, float]:
        """One optimizer step over ``accum_steps`` micro-batches; returns loss, grad norm, applied?, data wait."""
        cfg, ctx, state = self.cfg, self.ctx, self.state
        accum = self.plan.accum_steps
        self.model.train()
        self.scheduler.step_update(state.step)
        norms = list(self.module.buffers())  # running statistics and counters, restored if the step is dropped
        saved_norms = [b.detach().clone() for b in norms]
        total = torch.zeros((), device=ctx.device)
        waited = 0.0
        try:
            for micro in range(accum):
                tic = time.perf_counter()
                batch = next(batches)
                waited += time.perf_counter() - tic
                self.skipped.update(batch)
                seed_step(cfg.seed, state.step, ctx.rank * accum + micro)
                inputs, targets = self.objective.prepare(batch, ctx.device)
                sync = self.ddp.no_sync() if self.ddp is not None and micro < accum - 1 else nullcontext()
                with sync:
                    with autocast_context(cfg.trainer.precision, ctx.device):
                        output = self.objective.forward(self.model, inputs)
                    loss = self.objective.loss(output, targets)
                    scaled = loss / accum
                    (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
                total += loss.detach()
        except Exception:
            if self._interrupt is None:
                raise
            # the signal also reached the data workers: give the step up as if it had never started
            with torch.no_grad():
                for buffer, value in zip(norms, saved_norms, strict=True):
                    buffer.copy_(value)
            self.optimizer.zero_grad(set_to_none=True)
            raise _StepAbandoned from None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.module.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if cfg.optimizer.clip_grad is not None:
            torch.nn.utils.clip_grads_with_norm_(params, cfg.optimizer.clip_grad, grad_norm, foreach=True)
        # one host synchronisation: the summed loss, whether any process was signalled, and the norm
        shared = ctx.all_reduce_sum(torch.stack([total, torch.tensor(float(self._interrupt or 0), device=ctx.device)]))
        if shared[1] > 0:
            self._stop = True  # this or another process was signalled: all stop after this step
            self._interrupt = self._interrupt or int(signal.SIGTERM)
        loss_value, norm_value = torch.stack([shared[0] / (accum * ctx.world_size), grad_norm.to(total)]).tolist()
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
        state, primary = self.state, self.task.primary_metric
        last = state.step >= self.total_steps
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": state.step,
            "train_loss": state.epoch_loss_sum / state.epoch_loss_steps if state.epoch_loss_steps else float("nan"),
            "lr": self._lr(),
            "epoch_seconds": seconds,
        }
        best = False
        val = ""
        if self.val_set is not None and ((epoch + 1) % self.cfg.trainer.eval_every_epochs == 0 or last):
            metrics = self._validate(self.module)
            record.update({f"val_{key}": value for key, value in metrics.values.items()})
            if self.ema is not None:
                record[f"val_ema_{primary}"] = self._validate(self.ema.module).values[primary]
            val = f", val {self.task.metric_label} {metrics.primary:.2f}"
            best = state.best_metric is None or metrics.primary > state.best_metric
            if best:
                state.best_metric, state.best_epoch = metrics.primary, epoch
        state.epoch_loss_sum, state.epoch_loss_steps = 0.0, 0
        self.log.log("epoch", **record)
        self.log.plot()
        self._save_checkpoint(best=best)
        logger.info(
            "epoch %d/%d: train loss %.4f%s (%s)",
            epoch + 1,
            self.num_epochs,
            record["train_loss"],
            val,
            format_duration(seconds),
        )

    def _validate(self, model: nn.Module) -> Metrics:
        if self.ctx.distributed:  # BatchNorm statistics differ per process; evaluate rank 0's everywhere
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)
        return run_evaluation(
            model,
            self.val_set,
            self.task.metric(self.cfg, self.val_set),
            collate=self.task.collate,
            inputs=self.task.model_inputs,
            batch_size=self.cfg.trainer.val_batch_size or self.plan.micro_batch,
            ctx=self.ctx,
            precision=self.cfg.trainer.precision,
            num_workers=self.workers,
            progress=self.cfg.trainer.progress,
            options=self.task.test_options(self.cfg),
        )

    def _all_skipped(self) -> SkippedInputs:
        """Unreadable inputs reported to any process (a collective call under DDP)."""
        if not self.ctx.distributed:
            return self.skipped
        merged = SkippedInputs(self.skipped.noun)
        for part in self.ctx.all_gather_object(self.skipped.to_dict()):
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
                "global_batch": self.plan.global_batch,
                "world_size": self.ctx.world_size,
            },
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            **self.task.weights_metadata(self.cfg, self.train_set),  # class names, views: what predict needs
        }

    def _save_checkpoint(self, best: bool) -> None:
        """Every process calls this (the skipped-input reports are gathered); rank 0 writes."""
        skipped = self._all_skipped()
        if self.ctx.is_main:
            self.state.skipped_videos = skipped.to_dict()
            self.checkpoints.save(self._checkpoint_state(), self.state.step, best=best)

    def _finish(self) -> TrainResult:
        state, ctx, primary = self.state, self.ctx, self.task.primary_metric
        memory, memory_kind = peak_memory(ctx.device)
        throughput = state.clips_seen / state.train_seconds if state.train_seconds else 0.0
        epochs = state.step / self.steps_per_epoch
        last_val = next((r.get(f"val_{primary}") for r in reversed(self.log.records) if r["kind"] == "epoch"), None)
        best = (
            f"best val {self.task.metric_label} {state.best_metric:.2f} (epoch {state.best_epoch + 1})"
            if state.best_metric is not None
            else "no validation set"
        )
        skipped = self._all_skipped()
        notes = []
        if state.nan_skips:
            notes.append(f"{state.nan_skips} step(s) skipped for non-finite loss")
        if len(skipped):
            notes.append(f"{len(skipped)} unreadable input(s) replaced (see train.log)")
            logger.warning(skipped.summary())
        summary = (
            f"trained {state.step} steps ({epochs:.2f} epochs) in {format_duration(state.train_seconds)}: {best}; "
            f"{throughput:.1f} items/s; peak {memory_kind} {format_bytes(memory)}"
            + (f"; {'; '.join(notes)}" if notes else "")
            + f"; output in {self.out}"
        )
        self.log.log(
            "summary",
            step=state.step,
            metric=primary,
            best_metric=state.best_metric,
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
            metric=primary,
            best_metric=state.best_metric,
            best_epoch=state.best_epoch,
            last_val_metric=last_val,
            train_seconds=state.train_seconds,
            clips_per_second=throughput,
            peak_memory_bytes=memory,
            nan_skips=state.nan_skips,
            skipped_videos=skipped.to_dict(),
            summary=summary,
        )


def _merge_skipped(target: Any, entries: dict[str, dict[str, Any]]) -> None:
    """Add ``{path: {"reason", "count"}}`` reports to a :class:`uniformer.data.SkippedInputs`."""
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
