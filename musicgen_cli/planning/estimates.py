"""The constants of mgen's memory and speed model, in one place, with where they come from.

Decoding one MusicGen frame is memory-bound: every step reads every weight of the LM once
(plus the KV cache), so a step takes about bytes-read / bandwidth on whatever device reads
them. The figures below are vendor peaks scaled by the share decode kernels reach in
practice; they are estimates, and the plan says so.
"""

from __future__ import annotations

GiB = 2**30
MiB = 2**20

# --- GPU ---------------------------------------------------------------------------------
# Peak memory bandwidth (bytes/s) from the vendors' spec sheets, matched by name substring,
# most specific first. Only cards CUDA 13 builds of torch still run (Turing, sm 7.5, and newer:
# Maxwell, Pascal and Volta were dropped).
GPU_BANDWIDTHS: tuple[tuple[str, float], ...] = (
    ("H200", 4.8e12),
    ("H100 PCIe", 2.0e12),
    ("H100", 3.35e12),
    ("A100", 1.94e12),
    ("L40", 864e9),
    ("A10", 600e9),
    ("L4", 300e9),
    ("T4", 320e9),
    ("4090", 1008e9),
    ("4080", 717e9),
    ("4070 Ti", 504e9),
    ("4070", 504e9),
    ("4060 Ti", 288e9),
    ("4060", 272e9),
    ("3090", 936e9),
    ("3080", 760e9),
    ("3070", 448e9),
    ("3060", 360e9),
    ("2080", 448e9),
    ("2070", 448e9),
    ("2060", 336e9),
)
# An unknown card, and a simulated one: an RTX 3060-class consumer GPU (360 GB/s).
DEFAULT_GPU_BANDWIDTH = 300e9
SIMULATED_GPU_BANDWIDTH = 360e9
# Share of peak bandwidth that batch-2 GEMV decode kernels reach (vendor GEMV benchmarks and
# gpt-fast's measured tokens/s: 60-80 %).
GPU_BANDWIDTH_EFFICIENCY = 0.7
# Kernel launches per decoder layer and step in eager PyTorch: ~15 kernels at ~5 us each.
GPU_LAYER_OVERHEAD_S = 80e-6
# What torch.cuda.mem_get_info already misses once the CUDA context and cuBLAS workspaces
# exist (PyTorch docs, "CUDA memory management": several hundred MiB per device).
CUDA_CONTEXT_BYTES = 400 * MiB
# cuBLAS workspaces on a GPU that runs decoder layers: CUDA 12+ cuBLAS keeps up to 32 MiB per
# stream on Hopper (4 MiB elsewhere); the compute and the layer-copy streams each get one.
CUBLAS_WORKSPACE_BYTES = 64 * MiB
# The caching allocator's fragmentation, as a share of what a GPU may hold: large blocks are
# carved from 2 MiB-rounded segments and cached once freed, and a decode step's attention
# tensors grow by one position a step, so a freed block is often a little too small for the
# next request and a new segment is reserved beside it. Reserved-over-allocated stays within a
# few per cent for one-shape-per-step inference; 5 % covers it with room (the GPU check
# compares memory_reserved with memory_allocated on a real card).
FRAGMENTATION_SHARE = 0.05
# Host RSS added by loading the CUDA runtime, cuBLAS and cuDNN into the process.
CUDA_HOST_RSS_BYTES = 1 * GiB
# VRAM left unused by default (--reserve): max of this floor and a share of the card, for the
# desktop and other processes (fragmentation and workspaces have their own reserve, below).
DEFAULT_RESERVE_FLOOR = 512 * MiB
DEFAULT_RESERVE_SHARE = 0.08
# The caching allocator rounds blocks up; transient tensors cost a little more than their size.
ALLOCATOR_SLACK = 1.10

# --- host --------------------------------------------------------------------------------
# Pinned host-to-device copies (what streamed RAM layers use) over PCIe 4.0 x16, when the
# machine's link has not been measured (simulated GPUs).
PINNED_H2D_BANDWIDTH = 22e9
# Effective DRAM bandwidth of a desktop (dual-channel DDR4/DDR5 STREAM triad ~25-60 GB/s),
# reached only with enough cores: each core streams about PER_CORE.
CPU_MEM_BANDWIDTH = 25e9
CPU_PER_CORE_BANDWIDTH = 6e9
# Operator dispatch per decoder layer and step on CPU (eager PyTorch, ~15 ops).
CPU_LAYER_OVERHEAD_S = 150e-6
# Anonymous RSS of a Python process with torch, transformers and the MusicGen modules imported
# and a tokenizer loaded, before any weight (measured: 254 MiB, torch 2.13 CPU, transformers 5,
# Linux x86-64). File-backed library pages (85-146 MiB more, by page-cache state) are left out:
# the kernel can reclaim them, so they never make a job fail.
RUNTIME_BASE_ANON = 260 * MiB
# Sequential reads of disk-offloaded weights (NVMe SSD ~2 GB/s; SATA is 0.5).
DISK_BANDWIDTH = 1.5e9
# RAM kept free for the OS and the desktop when planning against available memory.
RAM_RESERVE = 512 * MiB

# --- job ---------------------------------------------------------------------------------
# Text prompt length budgeted for cross-attention when the prompt is not known yet (T5 tokens;
# MusicGen prompts are short). A job whose prompts are known is planned for them (Job.text_tokens).
TEXT_TOKENS = 64
# The longest prompt the text encoder is given (T5's trained context).
MAX_TEXT_TOKENS = 512
# Live activations of the EnCodec decoder, in tensors of num_filters channels at the full
# sample rate: its last upsampling stage holds this many at once. Measured: peak RSS growth
# of a 32 kHz decode on CPU is 40 MiB per second of audio (benchmarks, 5 s vs 20 s clips).
CODEC_LIVE_TENSORS = 5.2
# The same decode on a GPU in live tensor bytes (what the caching allocator has handed out, as
# max_memory_allocated reports it): 4.0 such tensors, 31.3 MiB per second of audio, counted by
# the VRAM ledger (musicgen_cli/testing/ledger.py) for 2 to 30 s clips. The host figure above is
# RSS, which also holds blocks malloc keeps after they are freed; on a GPU that slack is the
# workspace reserve's fragmentation share.
CODEC_LIVE_TENSORS_VRAM = 4.0
# Seconds of decode per second of audio for EnCodec (32 kHz): GPU (estimate), and one CPU
# core (measured: 20 s of audio in 17.7 s on one thread).
CODEC_S_PER_AUDIO_S_GPU = 0.004
CODEC_S_PER_AUDIO_S_CPU_CORE = 0.9
# Chunk length EnCodec decodes at a time when the whole clip does not fit (seconds).
CODEC_CHUNK_S = 10.0
# T5-base encoding of one prompt on CPU (s); small next to the decode loop.
TEXT_ENCODER_S = 0.2

# --- MultiBand Diffusion (planning/diffusion.py) --------------------------------------------
# Live tensors of one U-Net pass as wide as its widest encoder level, beside the skips: a
# residual block's input, hidden and normalised copies and oneDNN's im2col buffer of its
# kernel-3 convolutions. Fitted to measured peaks: 12 matches the released layout (3072-wide
# bottom) within 10 % at 1 and 4 s and the tiny one at 4-16 s (peak RSS, torch 2.13 CPU).
MBD_LIVE_LEVELS = 12
# Full-rate mono tensors the sampling chain holds during a pass: its state, the estimate, the
# drawn noise, the bands' running sum, EnCodec's reference and the pass's last output.
MBD_CHAIN_TENSORS = 6
# The equalisation splits the result and the reference into 32 mel bands with julius' FFT
# convolution: two band stacks alive, plus about three more in the padded filters, their
# spectrum and the product while the second one is made. Measured with a fixed malloc mmap
# threshold (freed blocks go back at once, so RSS is what is live): a whole MBD decode of the
# tiny layout peaks 88.7 / 164.6 / 316.7 MiB above its start for 4 / 8 / 16 s of audio.
MBD_EQ_BANDS = 32
MBD_EQ_BAND_STACKS = 5
# glibc's default heap keeps freed blocks for reuse, so the same decodes peak 1.0-1.9x that
# live figure (4 runs of 4 s); a CPU decode is planned at 1.5x, the RAM reserve takes the rest.
CPU_HEAP_SLACK = 1.5
# float32 convolution throughput of one CPU core under oneDNN (measured: the released layout's
# 50 GFLOP pass in 1.64 CPU-seconds on a 2-core Xeon with AMX, torch 2.13).
CPU_CONV_FLOPS_PER_CORE = 30e9
# A GPU's float32/TF32 convolution rate under cuDNN: an estimate for a recent card (no table
# per card; the plan says it is an estimate).
GPU_CONV_FLOPS = 20e12
# Dispatch of one layer's op in eager PyTorch: a kernel launch on a GPU, an operator on a CPU.
GPU_OP_OVERHEAD_S = 5e-6
CPU_OP_OVERHEAD_S = 10e-6


def gpu_bandwidth(name: str) -> float:
    """Peak bandwidth of a GPU by its marketing name (DEFAULT_GPU_BANDWIDTH when unknown)."""
    for needle, bandwidth in GPU_BANDWIDTHS:
        if needle.lower() in name.lower():
            return bandwidth
    return DEFAULT_GPU_BANDWIDTH


def cpu_bandwidth(cores: int) -> float:
    return min(CPU_MEM_BANDWIDTH, max(1, cores) * CPU_PER_CORE_BANDWIDTH)


def default_reserve(total_bytes: int) -> int:
    return int(max(DEFAULT_RESERVE_FLOOR, DEFAULT_RESERVE_SHARE * total_bytes))


def workspace_reserve(usable_bytes: int) -> int:
    """VRAM a GPU keeps beyond the plan's tensors (the bytes the VRAM ledger counts): the cuBLAS
    workspaces and EnCodec's cuDNN convolution workspace, which live outside the tensors the
    plan sizes, and allocator fragmentation in proportion to what the GPU may hold."""
    return CUBLAS_WORKSPACE_BYTES + int(FRAGMENTATION_SHARE * usable_bytes)

# A run whose decode speed misses the plan's estimate by more than this (% of the measured speed)
# says so: the probe's figures may be stale or from a busy machine (`mgen probe` measures again).
ESTIMATE_ERROR_SHOWN_PCT = 30.0
