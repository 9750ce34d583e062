#!/usr/bin/env python
"""Tiny IBQ reference workload: a convolutional VQ autoencoder trained with
Index Backpropagation Quantization (Shi et al., 2024, "Taming Scalable Visual
Tokenizer for Autoregressive Image Generation").

Plain VQ picks the nearest code and copies gradients straight through, so only
the selected codes are ever updated and large codebooks collapse.  IBQ instead
scores the encoder output against the whole codebook and makes the *one-hot
index* differentiable:

    logits    = z @ codebook.T                 # (tokens, codebook_size)
    soft      = softmax(logits)
    hard      = one_hot(argmax(logits))
    index     = hard - soft.detach() + soft    # forward: hard, backward: soft
    quantized = index @ codebook

The forward pass uses exactly the selected code, while the backward pass sends
gradient through the softmax to every code in the codebook.  Training data are
16x16 RGB synthetic images (gradient background + one coloured rectangle or
disc) generated from (seed, rank, step).  The loss is

    reconstruction MSE
    + ||quantized - z||^2 + ||z - sg(code)||^2 + beta * ||code - sg(z)||^2
    + entropy_weight * (mean token entropy - entropy of the mean assignment)

(the "double quantization" loss of IBQ plus the optional MAGVIT-style entropy
regulariser; perceptual/GAN losses of the real tokenizer are omitted).  At this
tiny scale the entropy term matters: with --entropy_weight 0 the codebook
collapses onto a single code within ~20 steps and reconstruction does not
improve.  Each step logs the codebook usage (fraction of codes used in the
global batch, all ranks) and the perplexity of the code histogram.

Orchestration behaviour (launch modes, checkpoints, resume, crash injection,
SIGUSR1/SIGTERM handling) is identical to examples/tiny_dpo/train.py.
"""

import argparse
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

IMAGE_SIZE = 16
KEEP_CHECKPOINTS = 3


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Tiny IBQ (index backpropagation quantization) VQ autoencoder.")
    p.add_argument(
        "--output_dir",
        type=str,
        required=True,
        help="Where checkpoints are written (output_dir/checkpoints/step_<N>.pt).",
    )
    p.add_argument("--max_train_steps", type=int, default=60, help="Total optimizer steps.")
    p.add_argument("--train_batch_size", type=int, default=32, help="Images per process per micro-batch.")
    p.add_argument("--learning_rate", type=float, default=5e-3)
    p.add_argument("--codebook_size", type=int, default=256)
    p.add_argument("--embed_dim", type=int, default=16, help="Dimension of latent vectors / codes.")
    p.add_argument(
        "--codebook_beta",
        type=float,
        default=0.25,
        help="Weight of the term pulling selected codes towards the encoder output.",
    )
    p.add_argument(
        "--entropy_weight",
        type=float,
        default=0.1,
        help="Weight of the codebook-usage entropy regulariser (0 disables).",
    )
    p.add_argument(
        "--entropy_temperature", type=float, default=0.1, help="Softmax temperature of the entropy regulariser."
    )
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
    return p.parse_args(argv)


# --------------------------------------------------------------------------
# Distributed setup, logging, signals (identical in the tiny_dpo example)
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
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=args.mixed_precision,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
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


def save_checkpoint(accelerator, output_dir, step, state):
    """Rank 0 writes tmp + os.replace, prunes old ones; all ranks then sync."""
    if accelerator.is_main_process:
        d = checkpoint_dir(output_dir)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"step_{step}.pt")
        tmp = path + f".tmp.{os.getpid()}"
        torch.save(state, tmp)
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
# Model and data
# --------------------------------------------------------------------------
def batch_generator(seed, rank, step, micro=0):
    """Batches are a pure function of (seed, rank, step, micro), so resuming
    reproduces the exact data stream."""
    return torch.Generator().manual_seed(((seed * 10_007 + rank) * 1_000_033 + step) * 101 + micro)


def synthetic_images(n, g):
    """n RGB 16x16 images in [-1, 1]: a linear colour gradient in a random
    direction plus one rectangle or disc of a random colour."""
    s = IMAGE_SIZE
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")  # (s, s)
    angle = torch.rand(n, generator=g) * 2 * math.pi
    ramp = (torch.cos(angle)[:, None, None] * (xx - 0.5) + torch.sin(angle)[:, None, None] * (yy - 0.5)) + 0.5
    c0, c1 = torch.rand(n, 3, generator=g), torch.rand(n, 3, generator=g)
    ramp = ramp.clamp(0, 1)[:, None]  # (n, 1, s, s)
    img = c0[:, :, None, None] * (1 - ramp) + c1[:, :, None, None] * ramp

    cx, cy = torch.rand(n, generator=g) * 0.6 + 0.2, torch.rand(n, generator=g) * 0.6 + 0.2
    r = torch.rand(n, generator=g) * 0.2 + 0.12
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    disc = dx.pow(2) + dy.pow(2) < r[:, None, None].pow(2)
    rect = (dx.abs() < r[:, None, None]) & (dy.abs() < 0.7 * r[:, None, None])
    is_disc = (torch.rand(n, generator=g) < 0.5)[:, None, None]
    mask = torch.where(is_disc, disc, rect)[:, None].float()
    shape_color = torch.rand(n, 3, generator=g)[:, :, None, None]
    img = img * (1 - mask) + shape_color * mask
    return img * 2 - 1


class IBQuantizer(nn.Module):
    def __init__(self, codebook_size, embed_dim, beta, entropy_weight, entropy_temperature):
        super().__init__()
        # nn.Embedding's default N(0, 1) init.  With a tiny U(-1/K, 1/K) init
        # the dot-product logits start ~0, a single code wins every argmax and
        # this small model collapses onto it within a few steps.
        self.codebook = nn.Embedding(codebook_size, embed_dim)
        self.beta = beta
        self.entropy_weight = entropy_weight
        self.entropy_temperature = entropy_temperature

    def forward(self, z):
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)  # (tokens, d)
        logits = flat @ self.codebook.weight.t()  # (tokens, K): scores vs. the whole codebook
        soft = logits.softmax(dim=1)
        indices = logits.argmax(dim=1)
        hard = F.one_hot(indices, logits.shape[1]).to(soft.dtype)
        index = hard - soft.detach() + soft  # forward: hard one-hot; backward: softmax
        quantized = index @ self.codebook.weight  # forward value == codebook[indices]
        selected = self.codebook.weight[indices]  # same value, gradient only to chosen codes

        # Quantization loss:
        #   ||quantized - z||^2      index-backprop term; reaches the encoder and *every* code via softmax
        #   ||z - sg(selected)||^2   commitment of the encoder to its chosen code
        #   beta ||selected - sg(z)||^2  moves chosen codes towards the encoder output
        quant_loss = (
            F.mse_loss(quantized, flat)
            + F.mse_loss(flat, selected.detach())
            + self.beta * F.mse_loss(selected, flat.detach())
        )

        # Entropy regulariser: confident per-token assignment, diverse
        # assignment across the batch (raises codebook usage).
        probs = (logits / self.entropy_temperature).softmax(dim=1)
        token_entropy = -(probs * torch.log(probs.clamp_min(1e-9))).sum(dim=1).mean()
        mean_probs = probs.mean(dim=0)
        batch_entropy = -(mean_probs * torch.log(mean_probs.clamp_min(1e-9))).sum()
        entropy_loss = token_entropy - batch_entropy

        quantized = quantized.reshape(b, h, w, d).permute(0, 3, 1, 2)
        return quantized, quant_loss, self.entropy_weight * entropy_loss, indices


class TinyIBQAutoencoder(nn.Module):
    """16x16x3 -> 4x4 x embed_dim latent grid (16 tokens/image) -> 16x16x3."""

    def __init__(self, codebook_size, embed_dim, beta, entropy_weight, entropy_temperature, ch=32):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, ch, 4, stride=2, padding=1),
            nn.SiLU(),  # 8x8
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1),
            nn.SiLU(),  # 4x4
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(2 * ch, embed_dim, 1),
        )
        self.quantizer = IBQuantizer(codebook_size, embed_dim, beta, entropy_weight, entropy_temperature)
        self.decoder = nn.Sequential(
            nn.Conv2d(embed_dim, 2 * ch, 3, padding=1),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1),
            nn.SiLU(),  # 8x8
            nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1),
            nn.SiLU(),  # 16x16
            nn.Conv2d(ch, 3, 3, padding=1),
        )

    def forward(self, x):
        quantized, quant_loss, entropy_loss, indices = self.quantizer(self.encoder(x))
        return self.decoder(quantized), quant_loss, entropy_loss, indices


def codebook_stats(indices, codebook_size):
    counts = torch.bincount(indices.flatten(), minlength=codebook_size).float()
    probs = counts / counts.sum()
    usage = (counts > 0).float().mean().item()
    perplexity = torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum()).item()
    return usage, perplexity


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

    torch.manual_seed(args.seed)  # same init on every rank (DDP also broadcasts rank 0's weights)
    model = TinyIBQAutoencoder(
        args.codebook_size, args.embed_dim, args.codebook_beta, args.entropy_weight, args.entropy_temperature
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)

    start_step = latest_checkpoint_step(accelerator, args.output_dir)
    if start_step > 0:
        path = os.path.join(checkpoint_dir(args.output_dir), f"step_{start_step}.pt")
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        log(f"resumed from checkpoint step={start_step} rank={rank}", all_ranks=True)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.wait_for_everyone()

    def state(step):
        return {
            "step": step,
            "model": accelerator.unwrap_model(model).state_dict(),
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
        totals = {"loss": 0.0, "rec": 0.0, "quant": 0.0, "entropy": 0.0}
        step_indices = []
        for micro in range(args.gradient_accumulation_steps):
            with accelerator.accumulate(model):
                x = synthetic_images(args.train_batch_size, batch_generator(args.seed, rank, step, micro))
                x = x.to(accelerator.device)
                with accelerator.autocast():
                    recon, quant_loss, entropy_loss, indices = model(x)
                    rec_loss = F.mse_loss(recon.float(), x)
                    loss = rec_loss + quant_loss + entropy_loss
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
            for k, v in (("loss", loss), ("rec", rec_loss), ("quant", quant_loss), ("entropy", entropy_loss)):
                totals[k] += v.item() / args.gradient_accumulation_steps
            step_indices.append(indices.detach())
        # Codebook usage over the global batch (all ranks, all micro-batches).
        all_indices = accelerator.gather(torch.cat(step_indices))
        usage, perplexity = codebook_stats(all_indices.cpu(), args.codebook_size)
        if args.sleep_per_step > 0:
            time.sleep(args.sleep_per_step)
        log(
            f"step={step} loss={totals['loss']:.5f} rec={totals['rec']:.5f} quant={totals['quant']:.5f} "
            f"entropy={totals['entropy']:.5f} "
            f"codebook_usage={usage:.3f} perplexity={perplexity:.1f} step_time={time.time() - t0:.3f}s "
            f"rank={rank} world_size={world}",
            all_ranks=True,
        )

        flag.report_once(log, rank)
        signum = flag.agreed(accelerator)
        if signum or step % args.checkpointing_steps == 0 or step == args.max_train_steps:
            save_checkpoint(accelerator, args.output_dir, step, state(step))
        if signum:
            # the agreement may end before this rank's own signal (Slurm's or the agent's) arrives: wait for it a little
            flag.await_own(5.0)
            flag.report_once(log, rank)
            log(f"received signal {signal.Signals(signum).name} at step={step}; checkpoint saved; exiting for requeue")
            shutdown(accelerator)
            return 0

    flag.restore()
    log(f"done steps={step}")
    shutdown(accelerator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
