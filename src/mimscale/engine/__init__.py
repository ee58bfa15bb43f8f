"""The one training engine that pre-training (``train/``) and fine-tuning (``evaluate/engine.py``) share.

- ``distributed``: one code path for a single process and torchrun DDP (ranks, reductions, the DDP wrap);
- ``runtime``: seeding, every RNG's state, autocast, the signal flag;
- ``params``: optimizer parameter groups (the no-weight-decay rule, layer decay) and AdamW;
- ``schedule``: the LR schedule, a pure function of the step, applied with per-group scales;
- ``step``: one optimizer step (accumulation, autocast, grad scaler, clipping) with the non-finite policy;
- ``guard``: the checks that stop a run gone wrong (non-finite steps, divergence, exploding weights);
- ``checkpoint``: what a checkpoint holds, declared once per loop, written, checked and restored from it.

Importing this package imports no torch (``schedule`` serves the torch-free study planner).
"""
