import shutil
import subprocess

import pytest
import xen_abi_checks


@pytest.fixture(scope="session")
def xen_header_probe(tmp_path_factory) -> xen_abi_checks.ProbeResult:
    """Compile and run, once per session, the C program that prints every
    size, offset, bitfield position and macro value of the installed headers."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is required to check the ABI against Xen's headers")
    work = tmp_path_factory.mktemp("xen_abi_probe")
    source = work / "probe.c"
    source.write_text(xen_abi_checks.build_probe_source())
    binary = work / "probe"
    build = subprocess.run(["gcc", "-std=gnu11", "-O0", "-w", "-D__XEN_TOOLS__",
                            "-I/usr/include", "-o", str(binary), str(source)],
                           capture_output=True, text=True)
    if build.returncode != 0:
        pytest.fail(f"the header probe {source} does not compile:\n{build.stderr[:4000]}",
                    pytrace=False)
    run = subprocess.run([str(binary)], check=True, capture_output=True, text=True)
    return xen_abi_checks.parse_probe_output(run.stdout)
