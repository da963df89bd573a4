"""Where the lab keeps things.

LAB_CACHE holds what is slow to make and safe to reuse between clones (Ollama builds, Debian root
filesystems, the Codex CLI). LAB_STATE holds what one running lab owns (keys, inventory, pids, logs)
and lives in the work tree, so each clone has its own.
"""
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAB_CACHE = Path(os.environ.get("LAB_CACHE", "/var/cache/llmops-ollama-lab"))
LAB_STATE = Path(os.environ.get("LAB_STATE", REPO / ".lab"))
# Virtualenvs of pinned test tools (the ansible-core matrix, the ecosystem's tools): a package cache like pip's, each
# made again when its pins change, shared by the clones of the machine.
VENV_CACHE = Path(os.environ.get("LLMOPS_VENV_CACHE",
                                 Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "llmops-ollama"))

# The lab network: one bridge on the machine, each host in its own network namespace behind a veth.
BRIDGE = os.environ.get("LAB_BRIDGE", "llmlab0")
SUBNET_PREFIX = os.environ.get("LAB_SUBNET", "10.199.0")  # /24
GATEWAY_IP = SUBNET_PREFIX + ".1"  # the machine's address on the bridge; lab services listen here


SUBNET6_PREFIX = os.environ.get("LAB_SUBNET6", "fd42:199::")  # /64, given on demand (fleet.add_ipv6)
GATEWAY_IP6 = SUBNET6_PREFIX + "1"


def host_ip6(index):
    """IPv6 address of lab host number `index` (1-based), once fleet.add_ipv6 gave it."""
    return "%s%d" % (SUBNET6_PREFIX, 10 + index)


def host_ip(index):
    """Address of lab host number `index` (1-based)."""
    return "%s.%d" % (SUBNET_PREFIX, 10 + index)
