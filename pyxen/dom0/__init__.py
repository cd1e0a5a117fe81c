"""Dom0 services: xenstored, the console daemon, PV back-ends."""
