#!/usr/bin/env python
"""Tiny Diffusion-DPO reference workload (Wallace et al., 2023, "Diffusion Model
Alignment Using Direct Preference Optimization").

A small MLP epsilon-prediction denoiser is trained on 16-dim synthetic "images"
(4x4, flattened), conditioned on one of a few prompt embeddings.  Each training
example is a (preferred, rejected) pair for the same prompt: preferred samples
come from one Gaussian cluster, rejected samples from a shifted cluster.  The
trainable model starts from a briefly "pretrained" denoiser (ordinary diffusion
loss on the un-preferenced mixture, standing in for a pretrained checkpoint)
and a frozen copy of it is the DPO reference.  Both halves of a pair share the
noise and the timestep, and the loss is

    model_diff = mse_w - mse_l
    ref_diff   = ref_mse_w - ref_mse_l
    inside     = -0.5 * beta_dpo * (model_diff - ref_diff)
    loss       = -logsigmoid(inside).mean()
    implicit_acc = mean(inside > 0)

The script is a template for the orchestration side too: it runs single
process, under `accelerate launch`, under `torchrun`, or started once per rank
with torchrun-style env vars (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR, MASTER_PORT).  It checkpoints atomically, resumes from the latest
checkpoint, can inject a crash, and on SIGUSR1/SIGTERM saves a checkpoint and
exits 0 so that the scheduler can requeue it.
"""

import argparse
import copy
import math
import os
import random
import re
import signal
import socket
import sys
import time

# Tiny models: one intra-op thread per process is fastest and avoids
# oversubscribing the CPU when several ranks share a node.  Must be set before
# torch is imported; an explicit OMP_NUM_THREADS from the user wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from accelerate import Accelerator  # noqa: E402

IMAGE_DIM = 16  # a 4x4 single-channel "image", flattened
NUM_PROMPTS = 4
PROMPT_DIM = 8
NUM_TRAIN_TIMESTEPS = 1000
KEEP_CHECKPOINTS = 3


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Tiny Diffusion-DPO reference workload.")
    p.add_argument(
        "--output_dir",
        type=str,
        required=True,
        help="Where checkpoints are written (output_dir/checkpoints/step_<N>.pt).",
    )
    p.add_argument("--max_train_steps", type=int, default=60, help="Total optimizer steps.")
    p.add_argument("--train_batch_size", type=int, default=32, help="Preference pairs per process per micro-batch.")
    p.add_argument("--learning_rate", type=float, default=1e-5)
    p.add_argument("--beta_dpo", type=float, default=5000.0, help="KL-regularisation strength of Diffusion-DPO.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpointing_steps", type=int, default=10, help="Save a checkpoint every N steps.")
    p.add_argument("--gradient_accumulation_steps", type=int, default=1)
    p.add_argument(
        "--mixed_precision",
        type=str,
        default=None,
        choices=["no", "fp16", "bf16"],
        help="Passed to Accelerator; effectively a no-op on CPU.",
    )
    p.add_argument(
        "--pretrain_steps",
        type=int,
        default=300,
        help="Steps of plain diffusion training that produce the reference model "
        "(stands in for a pretrained checkpoint; skipped when resuming).",
    )
    p.add_argument(
        "--crash_at_step", type=int, default=-1, help="Raise RuntimeError at the start of this step (-1 = never)."
    )
    p.add_argument("--crash_rank", type=int, default=0, help="Rank that raises the injected crash.")
    p.add_argument(
        "--hang_at_step",
        type=int,
        default=-1,
        help="Block forever at the start of this step (-1 = never); its peers then wait in the next "
        "all-reduce, as behind a rank stuck in a collective.",
    )
    p.add_argument("--hang_rank", type=int, default=0, help="Rank that blocks.")
    p.add_argument(
        "--sleep_per_step", type=float, default=0.0, help="Sleep this many seconds per step (simulates long training)."
    )
    p.add_argument(
        "--checkpoint_seconds",
        type=float,
        default=0.0,
        help="Take this many seconds longer to write each checkpoint (simulates a large model).",
    )
    p.add_argument(
        "--plain_accelerator",
        action="store_true",
        help="Build Accelerator() without cpu=, as DiffusionDPO's train.py does (on a CPU-only node "
        "it then needs ACCELERATE_USE_CPU to form one world).",
    )
    p.add_argument(
        "--independent_copies",
        action="store_true",
        help="Fault injection: ignore the distributed environment, every rank trains alone.",
    )
    p.add_argument(
        "--teardown_seconds",
        type=float,
        default=0.0,
        help="Take this many seconds to end after the last step (simulates a slow teardown or upload).",
    )
    return p.parse_args(argv)


# --------------------------------------------------------------------------
# Distributed setup, logging, signals (identical in the tiny_ibq example)
# --------------------------------------------------------------------------
def fill_rank_env_from_slurm():
    """If started by `srun` without RANK etc. but with a rendezvous address,
    derive the torchrun-style variables from Slurm's."""
    if "RANK" in os.environ or "MASTER_ADDR" not in os.environ:
        return
    if int(os.environ.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in os.environ:
        return
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ.setdefault("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0"))
    tasks_per_node = os.environ.get("SLURM_NTASKS_PER_NODE", "").split("(")[0]
    if tasks_per_node.isdigit():
        os.environ.setdefault("LOCAL_WORLD_SIZE", tasks_per_node)


def make_accelerator(args):
    fill_rank_env_from_slurm()
    # Without `cpu=True`, accelerate (1.15) on a machine without CUDA reports
    # DistributedType.NO and num_processes=1 on *every* rank even when
    # WORLD_SIZE>1 -- also under `accelerate launch --multi_gpu` and torchrun.
    # With cpu=True it takes its MULTI_CPU path: gloo process group built from
    # RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT.
    if args.independent_copies:
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)
    cpu = {} if args.plain_accelerator else {"cpu": not torch.cuda.is_available()}
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        **cpu,
    )
    world_env = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != world_env:
        raise RuntimeError(f"accelerate sees {accelerator.num_processes} processes but WORLD_SIZE={world_env}")
    return accelerator


class Logger:
    def __init__(self, accelerator):
        self.rank = accelerator.process_index
        self.world_size = accelerator.num_processes

    def __call__(self, msg, all_ranks=False):
        if all_ranks or self.rank == 0:
            # One write() per line so lines of concurrent ranks sharing a pipe
            # never interleave (launchers often run python unbuffered).
            sys.stdout.write(msg + "\n")
            sys.stdout.flush()


class SignalFlag:
    """Records SIGUSR1/SIGTERM; the training loop polls it once per step."""

    def __init__(self, signals=(signal.SIGUSR1, signal.SIGTERM)):
        self.signum = 0
        self._previous = {s: signal.signal(s, self._handler) for s in signals}

    def restore(self):
        """Training is over: put the previous handlers back, as Lightning does when fit returns. A checkpoint
        signal now would find nothing to save (danlu reads this from the process table and lets it finish)."""
        for s, previous in self._previous.items():
            signal.signal(s, previous)

    def _handler(self, signum, frame):
        self.signum = signum

    def await_own(self, seconds):
        """Stopping for another rank's signal: the same signal is on its way to this rank too (Slurm and danlu's
        agent send it to every rank, each node's a little apart), so wait a little for it rather than exit unaware."""
        end = time.time() + seconds
        while not self.signum and time.time() < end:
            time.sleep(0.05)

    def report_once(self, log, rank):
        """Each rank says when a signal reached it (asked before the ranks agree on stopping, and again after)."""
        if self.signum and not getattr(self, "_reported", False):
            self._reported = True
            log(f"signal {signal.Signals(self.signum).name} reached rank={rank}", all_ranks=True)

    def agreed(self, accelerator):
        """Max of the received signal number over all ranks (0 = none), so that
        every rank stops at the same step even if only one got the signal."""
        if accelerator.num_processes == 1:
            return self.signum
        t = torch.tensor([self.signum], dtype=torch.int64, device=accelerator.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return int(t.item())


def shutdown(accelerator):
    accelerator.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------
def checkpoint_dir(output_dir):
    return os.path.join(output_dir, "checkpoints")


def list_checkpoints(output_dir):
    d = checkpoint_dir(output_dir)
    if not os.path.isdir(d):
        return []
    steps = []
    for name in os.listdir(d):
        m = re.fullmatch(r"step_(\d+)\.pt", name)
        if m:
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_checkpoint_step(accelerator, output_dir):
    """Rank 0 decides, everyone follows (robust to a lagging shared FS)."""
    steps = list_checkpoints(output_dir) if accelerator.is_main_process else []
    obj = [steps[-1] if steps else 0]
    if accelerator.num_processes > 1:
        torch.distributed.broadcast_object_list(obj, src=0)
    return obj[0]


def save_checkpoint(accelerator, output_dir, step, state, seconds=0.0):
    """Rank 0 writes tmp + os.replace, prunes old ones; all ranks then sync."""
    if accelerator.is_main_process:
        d = checkpoint_dir(output_dir)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"step_{step}.pt")
        tmp = path + f".tmp.{os.getpid()}"
        torch.save(state, tmp)
        if seconds > 0:
            time.sleep(seconds)
        os.replace(tmp, path)
        for old in list_checkpoints(output_dir)[:-KEEP_CHECKPOINTS]:
            try:
                os.remove(os.path.join(d, f"step_{old}.pt"))
            except FileNotFoundError:
                pass
    accelerator.wait_for_everyone()


def rng_state():
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


# --------------------------------------------------------------------------
# Model, noise schedule, data
# --------------------------------------------------------------------------
def timestep_embedding(t, dim=16):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    ang = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class TinyDenoiser(nn.Module):
    """eps_theta(x_t, t, prompt): MLP over [x_t, sinusoidal(t), prompt embedding]."""

    def __init__(self, hidden=128):
        super().__init__()
        self.prompt_embed = nn.Embedding(NUM_PROMPTS, PROMPT_DIM)
        self.net = nn.Sequential(
            nn.Linear(IMAGE_DIM + 16 + PROMPT_DIM, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, IMAGE_DIM),
        )

    def forward(self, x_t, t, prompt):
        h = torch.cat([x_t, timestep_embedding(t), self.prompt_embed(prompt)], dim=1)
        return self.net(h)


def make_schedule():
    betas = torch.linspace(1e-4, 0.02, NUM_TRAIN_TIMESTEPS)
    return torch.cumprod(1.0 - betas, dim=0)  # alphas_cumprod


def add_noise(alphas_cumprod, x0, noise, t):
    a = alphas_cumprod[t][:, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


class PreferenceData:
    """Synthetic preference pairs.  For prompt c, preferred images are drawn
    around a prompt-specific mean pattern, rejected images around the same
    pattern shifted by a fixed offset.  Batches are a pure function of
    (seed, rank, step), so resuming reproduces the exact data stream."""

    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.means = torch.randn(NUM_PROMPTS, IMAGE_DIM, generator=g)
        self.shift = 0.3 * torch.randn(NUM_PROMPTS, IMAGE_DIM, generator=g)
        self.seed = seed
        self.std = 0.5

    def generator(self, rank, step, micro=0, salt=0):
        return torch.Generator().manual_seed(
            ((self.seed * 1_000_003 + salt) * 10_007 + rank) * 1_000_033 + step * 101 + micro
        )

    def pairs(self, n, g):
        prompt = torch.randint(0, NUM_PROMPTS, (n,), generator=g)
        win = self.means[prompt] + self.std * torch.randn(n, IMAGE_DIM, generator=g)
        lose = self.means[prompt] + self.shift[prompt] + self.std * torch.randn(n, IMAGE_DIM, generator=g)
        return prompt, win, lose

    def dpo_batch(self, n, g):
        """Pairs plus one noise draw and one timestep per pair (generated on
        the CPU so the stream is device-independent)."""
        prompt, win, lose = self.pairs(n, g)
        noise = torch.randn(n, IMAGE_DIM, generator=g)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (n,), generator=g)
        return prompt, win, lose, noise, t


def pretrain_reference(args, data, alphas_cumprod, log=None):
    """Plain epsilon-prediction training on the preferred+rejected mixture.
    Runs identically on every rank (single thread, fixed seed); the result is
    broadcast from rank 0 anyway. Every rank says it is alive every 5 steps: a
    silent start-up looks hung to a watchdog (launch.hang_timeout_s)."""
    torch.manual_seed(args.seed)
    model = TinyDenoiser()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for i in range(args.pretrain_steps):
        if log is not None and i % 5 == 0:
            log(f"pretrain step={i}/{args.pretrain_steps}", all_ranks=True)
        g = data.generator(rank=0, step=i, salt=1)
        prompt, win, lose = data.pairs(64, g)
        x0 = torch.cat([win, lose])
        prompt = torch.cat([prompt, prompt])
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (x0.shape[0],), generator=g)
        loss = F.mse_loss(model(add_noise(alphas_cumprod, x0, noise, t), t, prompt), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def dpo_loss(model, ref_model, alphas_cumprod, prompt, win, lose, noise, t, beta_dpo):
    # The pair's noise and timestep are shared by winner and loser.
    noise, t = noise.repeat(2, 1), t.repeat(2)
    x0 = torch.cat([win, lose])
    prompts = torch.cat([prompt, prompt])
    x_t = add_noise(alphas_cumprod, x0, noise, t)

    mse = (model(x_t, t, prompts) - noise).pow(2).mean(dim=1)
    mse_w, mse_l = mse.chunk(2)
    model_diff = mse_w - mse_l
    with torch.no_grad():
        ref_mse = (ref_model(x_t, t, prompts) - noise).pow(2).mean(dim=1)
        ref_mse_w, ref_mse_l = ref_mse.chunk(2)
        ref_diff = ref_mse_w - ref_mse_l

    inside = -0.5 * beta_dpo * (model_diff - ref_diff)
    loss = -F.logsigmoid(inside).mean()
    implicit_acc = (inside > 0).float().mean()
    return loss, implicit_acc, mse_w.mean().detach(), mse_l.mean().detach()


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    flag = SignalFlag()  # install the SIGUSR1/SIGTERM handlers as early as possible
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    accelerator = make_accelerator(args)
    rank, world = accelerator.process_index, accelerator.num_processes
    log = Logger(accelerator)
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    log(
        f"rank={rank} world_size={world} local_rank={accelerator.local_process_index} node={node} pid={os.getpid()}",
        all_ranks=True,
    )

    data = PreferenceData(args.seed)
    alphas_cumprod = make_schedule()

    start_step = latest_checkpoint_step(accelerator, args.output_dir)
    if start_step > 0:
        path = os.path.join(checkpoint_dir(args.output_dir), f"step_{start_step}.pt")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model, ref_model = TinyDenoiser(), TinyDenoiser()
        model.load_state_dict(ckpt["model"])
        ref_model.load_state_dict(ckpt["ref_model"])
    else:
        ckpt = None
        ref_model = pretrain_reference(args, data, alphas_cumprod, log)
        if world > 1:
            for p in ref_model.parameters():
                torch.distributed.broadcast(p.data, src=0)
        model = copy.deepcopy(ref_model)
    ref_model.requires_grad_(False).eval()

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        log(f"resumed from checkpoint step={start_step} rank={rank}", all_ranks=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    ref_model.to(accelerator.device)
    alphas_cumprod = alphas_cumprod.to(accelerator.device)
    accelerator.wait_for_everyone()

    def state(step):
        return {
            "step": step,
            "model": accelerator.unwrap_model(model).state_dict(),
            "ref_model": ref_model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng": rng_state(),
            "args": vars(args),
        }

    step = start_step
    for step in range(start_step + 1, args.max_train_steps + 1):
        if step == args.crash_at_step and rank == args.crash_rank:
            raise RuntimeError(f"injected crash at step {step} on rank {rank}")
        if step == args.hang_at_step and rank == args.hang_rank:
            log(f"injected hang at step={step} rank={rank}", all_ranks=True)
            while True:
                time.sleep(3600)
        t0 = time.time()
        model.train()
        losses, accs = [], []
        for micro in range(args.gradient_accumulation_steps):
            with accelerator.accumulate(model):
                batch = data.dpo_batch(args.train_batch_size, data.generator(rank, step, micro))
                batch = [x.to(accelerator.device) for x in batch]
                with accelerator.autocast():
                    loss, acc, mse_w, mse_l = dpo_loss(model, ref_model, alphas_cumprod, *batch, args.beta_dpo)
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            losses.append(loss.item())
            accs.append(acc.item())
        if args.sleep_per_step > 0:
            time.sleep(args.sleep_per_step)
        log(
            f"step={step} loss={sum(losses) / len(losses):.5f} implicit_acc={sum(accs) / len(accs):.3f} "
            f"mse_w={mse_w.item():.4f} mse_l={mse_l.item():.4f} step_time={time.time() - t0:.3f}s "
            f"rank={rank} world_size={world}",
            all_ranks=True,
        )

        flag.report_once(log, rank)
        signum = flag.agreed(accelerator)
        if signum or step % args.checkpointing_steps == 0 or step == args.max_train_steps:
            save_checkpoint(accelerator, args.output_dir, step, state(step), args.checkpoint_seconds)
        if signum:
            # the agreement may end before this rank's own signal (Slurm's or the agent's) arrives: wait for it a little
            flag.await_own(5.0)
            flag.report_once(log, rank)
            log(f"received signal {signal.Signals(signum).name} at step={step}; checkpoint saved; exiting for requeue")
            shutdown(accelerator)
            return 0

    flag.restore()
    log(f"done steps={step}")
    time.sleep(args.teardown_seconds)
    shutdown(accelerator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
