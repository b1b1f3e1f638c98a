"""runtime of pcas_core: how a stage runs: its start (params, seed, device, log), the training loop, resume checkpoints, several processes, training curves (see DEVELOPERS.md for its modules)."""
