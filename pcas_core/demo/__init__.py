"""demo of pcas_core: the bundled demo: a dataset composed from real cut-outs and recordings, and a test video (see DEVELOPERS.md for its modules)."""
