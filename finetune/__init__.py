"""LoRA fine-tuning jobs: spec, queue, worker, trainer and executors."""
