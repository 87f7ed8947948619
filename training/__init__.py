"""Reference training for Mantis Shrimp (torchvision "references" style): DDP training and evaluation (the models live in mantis_data.models).

    torchrun --nproc_per_node=N -m training.train --data RELEASE --fusion early --out RUN
    python -m training.evaluate --checkpoint RUN/best.pt --data RELEASE --split test --out REPORT

See docs/training.md.
"""
