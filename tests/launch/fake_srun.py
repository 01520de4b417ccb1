"""A stand-in for SLURM's `srun` on one machine, for the launch tests.

`srun --nodes=N --ntasks-per-node=T [--OTHER=VALUE ...] COMMAND...` starts N*T copies of
COMMAND with the variables srun gives each task (SLURM_PROCID, SLURM_LOCALID, SLURM_NODEID,
SLURM_NTASKS, SLURM_STEP_NODELIST, SLURM_STEP_NUM_NODES), every "node" being this machine
(localhost), and exits with the first non-zero status of its tasks.
"""

import os
import subprocess
import sys

options = {}
arguments = sys.argv[1:]
while arguments and arguments[0].startswith("--"):
    name, _, value = arguments.pop(0)[2:].partition("=")
    options[name] = value
nodes, tasks_per_node = int(options["nodes"]), int(options["ntasks-per-node"])
tasks = []
for process_id in range(nodes * tasks_per_node):
    env = dict(os.environ, SLURM_PROCID=str(process_id),
               SLURM_LOCALID=str(process_id % tasks_per_node),
               SLURM_NODEID=str(process_id // tasks_per_node),
               SLURM_NTASKS=str(nodes * tasks_per_node), SLURM_STEP_NODELIST="localhost",
               SLURM_STEP_NUM_NODES=str(nodes))
    tasks.append(subprocess.Popen(arguments, env=env))
statuses = [task.wait(timeout=120) for task in tasks]
sys.exit(next((status for status in statuses if status), 0))
