"""models of pcas_core (see DEVELOPERS.md for its modules)."""
