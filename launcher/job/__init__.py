"""The job side: what runs inside a Slurm job (or a local run), on every node.

`python -m launcher.job` is submitit's job-side runner for the pickled node agent (`launcher.node_agent.NodeAgent`,
whose call runs `agent.run_node`); `python -m launcher.job.port` picks the job's rendezvous port on the head node.
Nothing here imports the login side of danlu (only the shared modules: `launcher.layout`, which says where the run's
files go, and the agent's configuration), nor torch.
"""
