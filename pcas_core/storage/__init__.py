"""storage of pcas_core: what stages leave behind: HDF5 feature stores and their row views, model weights, atomic writes (see DEVELOPERS.md for its modules)."""
