"""evaluation of pcas_core: scores (AVSBench metrics, clean and official modes), sanity baselines, pictures (see DEVELOPERS.md for its modules)."""
