"""Devices as the runtime knows them: the profile schema read from device_profiles/ and its wire form.

Torch-free and below every role: the device command declares its profile with it, the coordinator
plans capacity from the profiles it receives, the fleet emulates devices from the same files.
"""
