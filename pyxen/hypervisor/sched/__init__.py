"""Scheduling: the framework interface (core), the schedulers, the simulator."""
