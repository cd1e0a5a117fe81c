"""x86 architecture support: the vCPU backend on the Unicorn engine and its pieces."""

from __future__ import annotations

from . import hvm_context
from .cpuid import TSC_KHZ
from .ticker import Ticker


class X86Arch:
    name = "x86"
    # Guest types this build runs (PV is a separate, optional part: not built yet).
    capabilities = "hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
    cpu_khz = TSC_KHZ

    def __init__(self, hv):
        from ..unicorn_raw import EnginePool
        from .engine import new_engine
        self.hv = hv
        self.ticker = Ticker()
        self.engines = EnginePool(new_engine, size=hv.params.get("engine_spares", 1))

    def create_vcpu_backend(self, vcpu):
        """A vCPU backend; the first of a domain also brings the domain's engine."""
        from .engine import DomainEngine
        from .vcpu import X86Vcpu
        d = vcpu.domain
        engine = d.arch_state.get("engine")
        if engine is None:
            engine = d.arch_state["engine"] = DomainEngine(self, d, self.engines.take())
        return X86Vcpu(self, vcpu, engine)

    def release_domain(self, domain) -> None:
        engine = domain.arch_state.pop("engine", None)
        if engine is not None:
            engine.close()

    def close(self) -> None:
        self.engines.close()

    def load_hvm_context(self, domain, blob: bytes) -> None:
        hvm_context.load(domain, blob)

    def save_hvm_context(self, domain) -> bytes:
        return hvm_context.save(domain)

    def record_from_vcpu_hvm_context(self, ctx):
        return hvm_context.record_from_vcpu_hvm_context(ctx)


ARCH = X86Arch
