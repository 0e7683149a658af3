"""Two processes on one machine, joined by ``jax.distributed``: the multi-host path.

``python examples/two_processes.py`` starts two copies of itself (process 0
and 1), each with 2 forced host CPU devices, on the loopback address with a
free port. They join with ``jax.distributed.initialize`` (CPU collectives
through gloo), build one mesh over all 4 devices and compute

- a batch of 4 matrices sharded over the processes' devices (``P("b")``),
  shard-local: no communication between the processes;
- one ``n × n`` matrix sharded along its rows over the 4 devices
  (``P("x", None)``): the row-sharded algorithm, whose collectives cross the
  process boundary.

Each process builds the same factors from a seed and checks the shards it
holds (``addressable_shards``) against ``numpy.linalg.inv`` of the full
matrix. The launcher waits at most ``--timeout`` seconds; a process that has
not finished by then is killed, and the launcher says which and shows what
it printed. Exit status 0: both processes passed; 77: jax has no gloo CPU
collectives or no ``jax.distributed`` here (skipped, the reason printed).

On a real cluster run the worker part once per host with that host's
``process_id`` and the coordinator's address (``--worker ID --port PORT``
shows how), and drop the forced devices.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

PROCESSES = 2
DEVICES_PER_PROCESS = 2
SKIP = 77  # the exit status of a skipped run (as automake's test harness uses it)


def worker(process_id: int, port: int) -> int:
    """One process: join the other, compute, check the shards this process holds."""
    # Forced host devices: must be set before jax is imported.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + f" --xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"
    )
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    from diffcholinv import cholesky_inv

    jax.config.update("jax_enable_x64", True)
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=f"127.0.0.1:{port}",
            num_processes=PROCESSES,
            process_id=process_id,
            initialization_timeout=60,
        )
    except (AttributeError, ValueError, RuntimeError, NotImplementedError) as err:
        print(f"skip: gloo CPU collectives / jax.distributed unavailable: {err}", flush=True)
        return SKIP
    tag = f"process {jax.process_index()} of {jax.process_count()}"
    devices = jax.devices()  # all processes' devices, in the same order everywhere
    assert len(devices) == PROCESSES * DEVICES_PER_PROCESS, devices
    assert len(jax.local_devices()) == DEVICES_PER_PROCESS, jax.local_devices()

    def factors(batch: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
        """The same factors in every process: from a seed, not communicated."""
        X = np.random.default_rng(0).standard_normal((*batch, n, n))
        A = X @ np.swapaxes(X, -1, -2) / n + np.eye(n)
        return np.linalg.cholesky(A), np.linalg.inv(A)

    def check(name: str, C: jax.Array, expected: np.ndarray, sharding: NamedSharding) -> None:
        assert C.sharding.is_equivalent_to(sharding, C.ndim), (name, C.sharding)
        err = 0.0
        for shard in C.addressable_shards:  # only what this process holds
            err = max(err, float(np.max(np.abs(np.asarray(shard.data) - expected[shard.index]))))
        assert err < 1e-10 * np.max(np.abs(expected)), f"{tag}, {name}: error {err:.1e}"
        print(f"{tag}: {name}: {len(C.addressable_shards)} shards, max error {err:.1e}", flush=True)

    def global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
        # Each process supplies the blocks of its own devices.
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    # (a) A batch of 4 matrices, one per device, across both processes.
    batch = NamedSharding(Mesh(np.array(devices), ("b",)), P("b"))
    Lb, Cb = factors((len(devices),), 32)
    check("batch P('b')", jax.jit(cholesky_inv)(global_array(Lb, batch)), Cb, batch)

    # (b) One matrix sharded along its rows over all 4 devices.
    rows = NamedSharding(Mesh(np.array(devices), ("x",)), P("x", None))
    L, C = factors((), 64)
    check("one matrix P('x', None)", cholesky_inv(global_array(L, rows)), C, rows)
    check(
        "one matrix under jit, device=",
        jax.jit(lambda x: cholesky_inv(x, device=rows))(global_array(L, rows)),
        C,
        rows,
    )
    jax.distributed.shutdown()
    print(f"{tag}: ok", flush=True)
    return 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def launch(timeout: float) -> int:
    """Start both processes, wait for them, and say which failed or hung."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", str(i), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    deadline = time.monotonic() + timeout
    outputs: list[str] = []
    hung = []
    for i, proc in enumerate(procs):
        try:
            out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            hung.append(i)
            for p in procs:  # kill both: the other waits for this one
                p.kill()
            out, _ = proc.communicate()
        outputs.append(out)
    for i, (proc, out) in enumerate(zip(procs, outputs, strict=True)):
        if i in hung:
            state = "hung: killed at the timeout"
        elif hung and proc.returncode < 0:
            state = "killed with the one that hung"
        else:
            state = f"exit status {proc.returncode}"
        print(f"--- process {i}: {state} ---\n{out.rstrip()}")
    if hung:
        print(f"process {', '.join(map(str, hung))} did not finish within {timeout:.0f} s")
        return 1
    codes = {p.returncode for p in procs}
    if codes == {0}:
        print(f"both processes passed in {timeout - (deadline - time.monotonic()):.1f} s")
        return 0
    if SKIP in codes and codes <= {0, SKIP}:
        return SKIP
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for both processes")
    parser.add_argument("--worker", type=int, help="run as this process id (the launcher sets it)")
    parser.add_argument("--port", type=int, help="the coordinator's port on 127.0.0.1")
    args = parser.parse_args(argv)
    if args.worker is None:
        return launch(args.timeout)
    return worker(args.worker, args.port)


if __name__ == "__main__":
    sys.exit(main())
