"""The fleet: device profiles, the virtual clock that times emulated devices, step FLOPs."""
