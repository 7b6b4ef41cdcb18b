"""Training layer: the Lightning module and Trainer set-up (callbacks, loggers, strategies)."""
