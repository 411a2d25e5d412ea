"""The cost model of a training step on a device: its FLOPs and weight bytes (flops.py, counted on
the memory model's meta-device build), and the seconds a device profile takes for them and for its
transfers (timing.py). The coordinator plans capacity with it and the fleet times emulated devices
with it, so both read the same figures. timing.py imports no torch; flops.py does.
"""
