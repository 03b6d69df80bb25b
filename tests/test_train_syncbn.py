"""GlobalBatchNorm under 2 gloo processes equals plain BatchNorm on the whole batch in one process."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from dre.train.distributed import detect_env, Distributed
    from dre.train.syncbn import convert_global_bn

    def run(out, rank, world):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                            nn.Flatten(), nn.Linear(4, 2))
        if world > 1:
            assert convert_global_bn(net) == 1
            net = nn.parallel.DistributedDataParallel(net, broadcast_buffers=False)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(1)
        for step in range(3):
            x = torch.randn(8, 3, 5, 5, generator=g) * 3 + 1
            y = torch.randn(8, 2, generator=g)
            b = 8 // world
            xs, ys = x[rank * b:(rank + 1) * b], y[rank * b:(rank + 1) * b]
            opt.zero_grad()
            loss = ((net(xs) - ys) ** 2).mean()
            loss.backward()
            opt.step()
        m = net.module if world > 1 else net
        torch.save({k: v.detach().clone() for k, v in m.state_dict().items()}, out)

    if __name__ == "__main__":
        env = detect_env()
        d = Distributed(env, torch.device("cpu")).init()
        run(sys.argv[1], env.rank, env.world_size)
        d.close()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two fresh interpreters; the 2-process training test covers this path by default
def test_global_bn_two_processes_match_one(tmp_path: Path, cli_env: dict[str, str]) -> None:
    script = tmp_path / "w.py"
    script.write_text(WORKER)
    env = {k: v for k, v in cli_env.items() if not k.startswith(("RANK", "WORLD_SIZE", "OMPI_", "PMI", "SLURM_"))}
    env["OMP_NUM_THREADS"] = "1"
    ns: dict = {"__name__": "worker"}
    exec(compile(WORKER, str(script), "exec"), ns)  # the one-process reference runs here, no subprocess
    ns["run"](str(tmp_path / "single.pt"), 0, 1)
    port = _free_port()
    procs = []
    for r in range(2):
        e = {**env, "RANK": str(r), "WORLD_SIZE": "2", "LOCAL_RANK": str(r), "MASTER_ADDR": "127.0.0.1",
             "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(script), str(tmp_path / f"r{r}.pt")], env=e))
    for p in procs:
        assert p.wait(timeout=120) == 0
    one = torch.load(tmp_path / "single.pt", weights_only=True)
    for r in range(2):
        two = torch.load(tmp_path / f"r{r}.pt", weights_only=True)
        for k, v in one.items():
            if v.is_floating_point():
                torch.testing.assert_close(two[k], v, rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
            else:
                assert torch.equal(two[k], v), k
    # and it really trained (a test that cannot fail is no test): the weights moved from the init
    torch.manual_seed(0)
    init = torch.nn.Conv2d(3, 4, 3, padding=1).weight
    assert not torch.allclose(one["0.weight"], init)
    assert not torch.allclose(one["1.running_mean"], torch.zeros(4))
