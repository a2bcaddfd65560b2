"""finesweep's search side: spec, space, strategies, study and the Ray Tune backend."""
