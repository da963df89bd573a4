"""Stand-in for the get-pip bootstrap script that ansible-test downloads from a host this network cannot reach.

ansible-test runs it inside a fresh virtual environment with pip's install arguments; it installs pip
from the Python's own bundled wheel (ensurepip) and then the requested versions from the package index.
"""
import ensurepip
import os
import subprocess
import sys

if __name__ == "__main__":
    ensurepip.bootstrap(upgrade=True)
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    env = dict(os.environ)
    env.pop("PIP_CONFIG_FILE", None)  # ensurepip points it at /dev/null; the machine's pip config must apply
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", "--upgrade"] + args, env=env))
