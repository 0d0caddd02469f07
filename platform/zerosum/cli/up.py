"""`zerosum up` / `zerosum down`: keep a local Ray head running, so that runs attach to it."""

from __future__ import annotations

import argparse


def cmd_up(args: argparse.Namespace) -> int:
    from zerosum.cluster.local_head import head_dir, start_head

    state, started = start_head(num_cpus=args.num_cpus)
    print(f"{'started' if started else 'already up:'} a Ray head at {state.address} "
          f"(pid {state.pid}, dashboard {state.dashboard}, token auth on)")
    print(f"`zerosum run` and `zerosum tune` attach to it until `zerosum down`; state in {head_dir()}")
    print(f"other Ray clients: export {' '.join(f'{k}={v}' for k, v in state.client_env().items())}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from zerosum.cluster.local_head import stop_head

    state = stop_head()
    print("no head of `zerosum up` is running" if state is None else f"stopped the Ray head at {state.address}")
    return 0


def register_commands(commands) -> None:
    up = commands.add_parser("up", help="start a local Ray head that runs attach to (token auth, 127.0.0.1)",
                             description="Start a Ray head on this machine and keep it running, so that "
                                         "`zerosum run` and `zerosum tune` attach to it instead of starting "
                                         "Ray each time. Its state is in $ZEROSUM_HOME/head (~/.zerosum/head).")
    up.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the head (default: all)")
    up.set_defaults(handler=cmd_up)
    down = commands.add_parser("down", help="stop the Ray head of `zerosum up`")
    down.set_defaults(handler=cmd_down)
