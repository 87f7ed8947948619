"""Reference training for Mantis Shrimp (torchvision "references" style): models, DDP training, evaluation.

    torchrun --nproc_per_node=N -m training.train --data RELEASE --fusion early --out RUN
    python -m training.evaluate --checkpoint RUN/best.pt --data RELEASE --split test --out REPORT

See docs/training.md.
"""
