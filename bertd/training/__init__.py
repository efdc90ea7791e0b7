"""What runs in a worker process: its entry point, the training loop, data and sheets, metrics,
LoRA, base models. Imports protocol and its own modules only; never aiohttp or aiosqlite."""
