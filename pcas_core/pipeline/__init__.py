"""pipeline of pcas_core: one module per DVC stage, named as the stage, plus the test-time path (inference) and `pcas predict` (see DEVELOPERS.md for its modules)."""
