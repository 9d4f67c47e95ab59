"""Which process of a run this is: one process alone, or one rank of a data-parallel run that
`torchrun` (or a SLURM job's tasks, through submitit) started, as its environment says.

No torch here: the run directory guard reads this before Hydra creates a folder, so that a
half-configured launch is refused leaving nothing behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from nnrun.errors import ConfigError

# What torchrun sets for every process it starts; submitit's TorchDistributedEnvironment sets
# the same names. RANK, WORLD_SIZE and LOCAL_RANK say a launch is meant; the rest must come
# with them.
NEEDED = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
SAYS_LAUNCH = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Launch:
    """One process of a data-parallel run.

    Args:
        rank, size: this process's place among all processes, and their number (the world).
        local_rank, local_size: the same on this machine (a GPU each); local_size None if the
            launcher does not say (a GPU check is then skipped).
        master_addr, master_port: where the rendezvous store listens.
        agent_store: the store is torchrun's (its agent's), which outlives a restart; otherwise
            rank 0 hosts it.
        restart: how many times torchrun has restarted the run (`--max-restarts`); 0 at first.
    """

    rank: int
    size: int
    local_rank: int
    local_size: int | None
    master_addr: str
    master_port: int
    agent_store: bool = False
    restart: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run's files and its console."""
        return self.rank == 0


def _number(env: Mapping[str, str], name: str) -> int:
    try:
        value = int(env[name])
    except ValueError:
        raise ConfigError(f"environment: {name}={env[name]!r} is not a whole number; launch "
                          "with torchrun, which sets it") from None
    if value < 0:
        raise ConfigError(f"environment: {name}={value} must be >= 0; launch with torchrun, "
                          "which sets it")
    return value


def launch_env(env: Mapping[str, str] | None = None) -> Launch | None:
    """This process's `Launch`, from the variables torchrun sets; None for a process on its own
    (none set, or a world of one: `torchrun --nproc_per_node=1` runs as plain `nnrun`).

    Raises:
        ConfigError: a half-configured launch (RANK without WORLD_SIZE or MASTER_ADDR, ...),
            or values that do not fit together (RANK >= WORLD_SIZE).
    """
    env = os.environ if env is None else env
    if not any(name in env for name in SAYS_LAUNCH):
        return None
    missing = [name for name in NEEDED if not env.get(name)]
    if missing:
        given = ", ".join(f"{n}={env[n]}" for n in NEEDED if env.get(n))
        raise ConfigError(f"environment: {given} set but not {', '.join(missing)}: a "
                          "half-configured launch; start the processes with torchrun "
                          "--nproc_per_node=N -m nnrun ..., or unset "
                          f"{' and '.join(n for n in SAYS_LAUNCH if n in env)} to run one process")
    rank, size, local_rank = (_number(env, n) for n in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    local_size = _number(env, "LOCAL_WORLD_SIZE") if env.get("LOCAL_WORLD_SIZE") else None
    if size == 0 or rank >= size or (local_size is not None and local_rank >= local_size):
        raise ConfigError(f"environment: RANK={rank}, WORLD_SIZE={size}, LOCAL_RANK={local_rank}"
                          f"{f', LOCAL_WORLD_SIZE={local_size}' if local_size else ''} do not "
                          "fit together (a rank is below the world size); launch with torchrun, "
                          "which sets them")
    if size == 1:
        return None
    return Launch(rank, size, local_rank, local_size, env["MASTER_ADDR"],
                  _number(env, "MASTER_PORT"),
                  agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
                  restart=_number(env, "TORCHELASTIC_RESTART_COUNT")
                  if env.get("TORCHELASTIC_RESTART_COUNT") else 0)


def from_slurm_tasks() -> None:
    """Inside a submitit job of several tasks (`hydra/launcher=slurm` with `tasks_per_node` or
    `nodes` above 1, or `submitit_local` with `tasks_per_node`): each task is one rank; export
    the variables torchrun would set, as submitit's own helper for torch.distributed does.
    Nothing for a job of one task, or outside submitit."""
    if "submitit" not in sys.modules or any(name in os.environ for name in SAYS_LAUNCH):
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    try:
        tasks = JobEnvironment().num_tasks
    except RuntimeError:  # not in a submitit job
        return
    if tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
