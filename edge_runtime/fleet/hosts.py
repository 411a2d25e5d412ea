"""Where the emulated devices live: one DeviceHost in this process, or several as Ray actors
(each with its own copy of the base, hosting a share of the devices). The emulator calls hosts
through this one interface and cannot tell the two apart."""

from __future__ import annotations

from abc import ABC, abstractmethod

from edge_runtime.errors import UserError
from edge_runtime.fleet.device_host import DeviceHost


class HostPool(ABC):
    size: int

    @abstractmethod
    def call(self, host: int, method: str, *args): ...

    @abstractmethod
    def call_all(self, method: str, args: list[tuple]) -> list:
        """`method` on every host at once, host i with args[i]; results in host order."""

    def close(self) -> None:
        """Hosts with resources of their own release them."""


class LocalHosts(HostPool):
    def __init__(self, host: DeviceHost) -> None:
        self.hosts, self.size = [host], 1

    def call(self, host, method, *args):
        return getattr(self.hosts[host], method)(*args)

    def call_all(self, method, args):
        return [getattr(h, method)(*a) for h, a in zip(self.hosts, args)]


class RayHosts(HostPool):
    def __init__(self, actors: int, cpus: float, address: str | None, host_kwargs: dict) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("the ray backend needs Ray: pip install 'edgetune[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            self._start_ray(address)
        remote = ray.remote(num_cpus=cpus)(DeviceHost)
        self.hosts = [remote.remote(**host_kwargs) for _ in range(actors)]
        self.size = actors

    def _start_ray(self, address: str | None) -> None:
        """Ray gives its local node a fixed 30 s to come up, which a loaded machine may miss: one more try."""
        for attempt in (1, 2):
            try:
                self.ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
                return
            except Exception as error:  # Ray raises a bare Exception for a node that did not start in time
                if attempt == 2 or "timed out during startup" not in str(error):
                    raise
                self.ray.shutdown()

    def call(self, host, method, *args):
        return self.ray.get(getattr(self.hosts[host], method).remote(*args))

    def call_all(self, method, args):
        return self.ray.get([getattr(h, method).remote(*a) for h, a in zip(self.hosts, args)])

    def close(self):
        for host in self.hosts:
            self.ray.kill(host)
