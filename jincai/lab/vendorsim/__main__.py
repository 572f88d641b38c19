"""Command line of the vendor CLI twins: serve one simulated router over SSH until interrupted.

    python -m jincai.lab.vendorsim --platform cisco_ios --listen 127.0.0.1:2203 \\
        --state /tmp/ios.json --config START.cfg [--time-scale 0.02] [--drop-after 12] \\
        [--unexpected-prompt 'ospf 1 router-id .*'] [--user netops --password netops] [--host-key FILE] \\
        [--authorized-keys ID.pub]

``--state`` keeps the router across restarts (the start config is read only when the state file
does not exist yet). ``--time-scale`` is real seconds per device second (default 1: real time).
"""

import argparse
import signal
import sys
import threading

from . import PLATFORMS, start
from .server import authorized_keys, host_key


def main(argv=None):
    """Parse the arguments, start the simulator, serve until SIGINT/SIGTERM."""
    ap = argparse.ArgumentParser(prog="python -m jincai.lab.vendorsim", description=__doc__.splitlines()[0])
    ap.add_argument("--platform", required=True, choices=PLATFORMS)
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default 127.0.0.1, any free port)")
    ap.add_argument("--state", required=True, help="JSON state file (created from --config if absent)")
    ap.add_argument("--config", help="start configuration (vendor syntax)")
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--drop-after", type=int, help="cut the first session that sends this many lines")
    ap.add_argument("--unexpected-prompt", help="regex: ask an unexpected [Y/N] question on such a config line")
    ap.add_argument("--user", default="netops")
    ap.add_argument("--password", default="netops")
    ap.add_argument("--host-key", help="RSA host key file (generated if absent)")
    ap.add_argument("--authorized-keys", help="OpenSSH public keys also accepted for --user")
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    start_config = ""
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as fh:
                start_config = fh.read()
        except OSError as exc:
            ap.error(f"--config {args.config}: {exc.strerror}")
    try:
        authorized = authorized_keys(args.authorized_keys) if args.authorized_keys else ()
    except (OSError, ValueError) as exc:
        ap.error(f"--authorized-keys {args.authorized_keys}: {exc}")
    server = start(args.platform, args.state, start_config, host=host or "127.0.0.1", port=int(port or 0),
                   key=host_key(args.host_key), authorized=authorized, time_scale=args.time_scale, drop_after=args.drop_after,
                   unexpected_prompt_re=args.unexpected_prompt, username=args.user, password=args.password)
    print(f"vendorsim {args.platform} listening on {server.host}:{server.port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    server.close()
    server.device.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
