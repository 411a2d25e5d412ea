"""The fleet emulator: many devices, each with its profile's availability and timing, against a real
coordinator; device hosts, lockstep and batched forwards, accounting, the report."""
