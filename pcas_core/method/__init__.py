"""method of pcas_core: the PCAS method itself: losses, CAMs, token and crop labels, the dense CRF, the per-frame pseudo-mask formula (see DEVELOPERS.md for its modules)."""
