"""Token generation: request types, windows for long clips, our static-cache loop, the
sampler, the delay pattern, the CUDA graph and layer offload. Works on a loaded transformers
model; knows nothing of files, plans or the CLI."""
