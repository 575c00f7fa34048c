# Helpers shared by scripts/bench and scripts/soak: servers, probes, load drivers, statistics.
