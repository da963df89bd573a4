"""The lab fleet: small Debian hosts, booted with systemd, for the collection's tests.

Run as root from the repo root:  python3 -m tests.lab.fleet up [--hosts N] [--releases bookworm,trixie]
                                 python3 -m tests.lab.fleet status | down | exec lab1 -- CMD...
Python API (pytest): up(n_hosts=3, releases=...) -> [{name, index, ip, release}], down(), status(),
inventory_path(), ssh_config_path(), ssh(host, *command) -> CompletedProcess.

Design
------
* Root filesystems: one per release, made once with ``debootstrap --variant=minbase`` into
  LAB_CACHE/rootfs/<release>. Builds run in parallel into temporary folders renamed into place when
  complete, so an interrupted build is never used. A stamp records the package list; a cache made with
  another list is rebuilt when no host uses it. Per-host identity (machine-id, SSH host keys) is stripped,
  and units with nothing to do in a container (gettys, timers that would grab the apt lock) are masked.
* Hosts: ``labN`` gets an overlayfs over its release's rootfs (upper/work/root in LAB_STATE/hosts/labN),
  so hosts are cheap and never change the cache. Hostname, machine-id, SSH host keys and root's
  authorized_keys (key made once in LAB_STATE/ssh) are written into the merged root before boot.
  Releases alternate: lab1 gets the first, lab2 the second, and so on. The HARDENED hosts (lab2) get
  login.defs' UMASK 027, as many hardened servers have.
* Network: a bridge BRIDGE holding GATEWAY_IP/24 on the machine; per host a network namespace
  ``llmlab-labN`` with ``eth0`` (host_ip(N)/24, a MAC derived from it, default route via GATEWAY_IP),
  set up from the machine with ``ip`` before boot, its veth peer ``llv-labN`` on the bridge. Nothing in
  the host manages the network. No NAT: hosts reach the machine (lab services listen on GATEWAY_IP) and
  each other, nothing else.
* Boot: ``systemd-nspawn --boot --register=no --keep-unit`` (no systemd/dbus on the machine to register
  with), in its own session, output to LAB_STATE/hosts/labN/console.log, pid recorded. nspawn's default
  capabilities are enough for systemd to create users and run hardened units (ProtectSystem, PrivateTmp,
  PrivateUsers, DynamicUser, SystemCallFilter...); CAP_NET_ADMIN and CAP_IPC_LOCK are not in that set.
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 gives the host cgroup v2: otherwise nspawn passes on the machine's
  hybrid v1/v2 layout, which systemd complains about (and trixie's systemd deprecates). That v2 tree has
  no controllers, so MemoryMax= and the like are accepted but not enforced.
  ``--kill-signal=SIGRTMIN+4`` makes SIGTERM to nspawn a clean poweroff: the default halt (SIGRTMIN+3)
  sometimes hangs at halt.target when several hosts stop at once.
* Ready: sshd answers and ``systemctl is-system-running --wait`` says running (or degraded: failed units
  are printed). Hosts boot in parallel.
* ``down`` copes with crashes and partial state: it stops recorded nspawn pids (checked against their
  command line, which names this lab's folder; escalating to SIGRTMIN+14, then SIGKILL), kills what is left
  in ``llmlab-*`` network namespaces (a killed nspawn leaves its container running; that is how it is
  found), unmounts everything under LAB_STATE/hosts, deletes namespaces, veths and the bridge, and removes
  host state. The rootfs cache and the SSH key stay.
"""
import argparse
import concurrent.futures
import fcntl
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.lab.errors import LabError, need_space
from tests.lab.paths import BRIDGE, GATEWAY_IP, GATEWAY_IP6, LAB_CACHE, LAB_STATE, host_ip, host_ip6

RELEASES = ("bookworm", "trixie")
# Hosts hardened as many sites harden servers: login.defs' UMASK 027 (lab2 is trixie, whose PAM applies it to SSH
# sessions through pam_umask; bookworm's common-session has no pam_umask).
HARDENED = ("lab2",)
PACKAGES = ("systemd,systemd-sysv,dbus,python3,openssh-server,iproute2,curl,ca-certificates,zstd,sudo,gnupg,"
            "python3-apt,procps,acl,xz-utils,less")
# Packages left in each rootfs's apt cache (with the package lists) but not installed: hosts have no internet, and
# roles install these from the cache as they would from a mirror (nginx for the proxy role).
CACHED_PACKAGES = ("nginx",)
# Units that have nothing to do in a container without hardware, clocks or a real console.
MASKED_UNITS = ("systemd-timesyncd.service", "systemd-networkd-wait-online.service", "getty@tty1.service",
                "serial-getty@.service", "console-getty.service", "e2scrub_reap.service", "apt-daily.timer",
                "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer", "e2scrub_all.timer")
NETNS_PREFIX = "llmlab-"
VETH_PREFIX = "llv-"
ROOTFS_DIR = LAB_CACHE / "rootfs"
# Where debootstrap keeps the .deb files it downloads: apt's own archive cache (outside the lab's cache, so an empty
# LAB_CACHE still builds quickly; `apt-get clean` empties it).
DEB_CACHE = Path(os.environ.get("LAB_DEB_CACHE", "/var/cache/apt/archives"))
ROOTFS_SPACE = 10 ** 9  # bytes a root filesystem takes, with room to spare
HOSTS_DIR = LAB_STATE / "hosts"
SSH_KEY = LAB_STATE / "ssh" / "id_ed25519"
BOOT_TIMEOUT = int(os.environ.get("LAB_BOOT_TIMEOUT", "180"))
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=5"]


def log(msg):
    print("lab: " + msg, flush=True)


def run(cmd, check=True, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    p = subprocess.run(cmd, text=True, check=False, **kw)
    if check and p.returncode:
        raise LabError("%s failed (%d): %s" % (" ".join(map(str, cmd)), p.returncode, (p.stderr or "").strip()))
    return p


def inventory_path():
    return LAB_STATE / "inventory.yml"


def ssh_config_path():
    return LAB_STATE / "ssh_config"


def _require_root():
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, systemd-nspawn): run it with sudo")
    for tool, pkg in (("debootstrap", "debootstrap"), ("systemd-nspawn", "systemd-container"),
                      ("ip", "iproute2"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client")):
        if not shutil.which(tool):
            raise LabError("%s not found: apt-get install %s" % (tool, pkg))


# ---------------------------------------------------------------- root filesystems (cache)

def _mirror(sources=None):
    """The Debian mirror the machine's apt uses (LAB_DEBIAN_MIRROR overrides)."""
    if os.environ.get("LAB_DEBIAN_MIRROR"):
        return os.environ["LAB_DEBIAN_MIRROR"]
    if sources is None:
        sources = glob.glob("/etc/apt/sources.list") + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for f in sources:
        try:
            text = Path(f).read_text()
        except OSError:
            continue
        for url in re.findall(r"^\s*(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+)", text, re.M):
            if re.search(r"/debian/?$", url):
                return url
    return "http://deb.debian.org/debian"


def _stamp():
    return "variant=minbase include=%s masked=%s cached=%s\n" % (
        PACKAGES, ",".join(MASKED_UNITS), ",".join(CACHED_PACKAGES))


def _rootfs_in_use(path):
    return any(str(path) in line for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _cached(release):
    """True if LAB_CACHE has a usable rootfs for `release` (caller holds the release's lock)."""
    final = ROOTFS_DIR / release
    stamp = final / ".lab-rootfs"
    if not stamp.exists():
        return False
    if stamp.read_text() == _stamp():
        return True
    if _rootfs_in_use(final):
        log("rootfs %s was built with another package list but is in use; using it anyway" % release)
        return True
    log("rootfs %s was built with another package list; rebuilding" % release)
    return False


def ensure_rootfs(releases):
    """Return {release: cached rootfs}, building the missing ones in parallel (debootstrap per release).

    Each build goes to a temporary folder that is renamed into place when complete; on any error or
    Ctrl-C the debootstraps are killed and their folders removed, so a partial tree is never used."""
    ROOTFS_DIR.mkdir(parents=True, exist_ok=True)
    locks, builds = [], {}
    try:
        for release in sorted(set(releases)):  # another `up` (other clone) may be building the same release
            locks.append(open(ROOTFS_DIR / (".%s.lock" % release), "w"))
            fcntl.flock(locks[-1], fcntl.LOCK_EX)
        mirror = _mirror()
        todo = [r for r in releases if not _cached(r)]
        if todo:
            need_space(ROOTFS_DIR, ROOTFS_SPACE * len(todo), "making the lab's root filesystems")
            DEB_CACHE.mkdir(parents=True, exist_ok=True)
        for release in todo:
            for old in list(ROOTFS_DIR.glob(".build-%s-*" % release)) + list(ROOTFS_DIR.glob(".old-%s-*" % release)):
                _rmtree(old)  # leftovers of interrupted builds
            tmp = ROOTFS_DIR / (".build-%s-%d" % (release, os.getpid()))
            logfile = ROOTFS_DIR / ("debootstrap-%s.log" % release)
            log("building %s rootfs with debootstrap from %s (log: %s)" % (release, mirror, logfile))
            with open(logfile, "w") as out:
                builds[release] = (subprocess.Popen(
                    ["debootstrap", "--variant=minbase", "--cache-dir=%s" % DEB_CACHE, "--include=" + PACKAGES,
                     release, str(tmp), mirror],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True),
                    tmp, logfile, time.time())
        for release, (proc, tmp, logfile, t0) in builds.items():
            if proc.wait():
                errors = [l for l in logfile.read_text(errors="replace").splitlines() if l.startswith("E:")]
                raise LabError("debootstrap %s failed%s (log: %s); check the mirror (or set LAB_DEBIAN_MIRROR) "
                               "and retry" % (release, (": " + errors[-1][3:]) if errors else "", logfile))
            _prepare_rootfs(tmp)
            _cache_packages(tmp, logfile)
            (tmp / ".lab-rootfs").write_text(_stamp())
            final = ROOTFS_DIR / release
            if final.exists():
                old = ROOTFS_DIR / (".old-%s-%d" % (release, os.getpid()))
                final.rename(old)
                _rmtree(old)
            tmp.rename(final)
            log("rootfs %s ready in %.0fs" % (release, time.time() - t0))
    finally:
        for proc, tmp, _logfile, _started in builds.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            if tmp.exists():
                _rmtree(tmp)
        for lock in locks:
            lock.close()
    return {r: ROOTFS_DIR / r for r in releases}


def _rmtree(path):
    """rm -rf that first unmounts what is mounted below (a killed debootstrap leaves proc/sys mounted)."""
    _umount_under(path)
    if any((mp + "/").startswith(str(path) + "/") for mp in _mountpoints()):
        raise LabError("%s still has mounts below it; unmount them and retry" % path)
    shutil.rmtree(path, ignore_errors=True)


def _prepare_rootfs(root):
    """Make a debootstrapped tree fit to be shared by many hosts."""
    for f in root.glob("etc/ssh/ssh_host_*"):
        f.unlink()
    (root / "etc/machine-id").write_text("")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    for unit in MASKED_UNITS:
        link = root / "etc/systemd/system" / unit
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/dev/null")
    # No DNS in the lab; keep ssh logins fast.
    (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssh/sshd_config.d/lab.conf").write_text("UseDNS no\nPermitRootLogin prohibit-password\n")
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def _cache_packages(root, logfile):
    """Fill the rootfs's package lists and apt cache with CACHED_PACKAGES and what they need (not installed)."""
    with open(logfile, "a") as out:
        for cmd in (["apt-get", "-q", "update"],
                    ["apt-get", "-q", "-y", "--no-install-recommends", "--download-only", "install"]
                    + list(CACHED_PACKAGES)):
            if subprocess.call(["chroot", str(root)] + cmd, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT):
                raise LabError("%s in the new rootfs failed (log: %s); check the mirror and retry"
                               % (" ".join(cmd[:3]), logfile))


# ---------------------------------------------------------------- host plans and state

def plan(n_hosts, releases=RELEASES):
    return [{"name": "lab%d" % i, "index": i, "ip": host_ip(i), "release": releases[(i - 1) % len(releases)]}
            for i in range(1, n_hosts + 1)]


def _hdir(name):
    return HOSTS_DIR / name


def _nspawn_pid(name):
    """Pid of the host's systemd-nspawn if it is alive and really ours, else None."""
    try:
        pid = int((_hdir(name) / "pid").read_text())
        if _is_our_nspawn(pid, name):
            return pid
    except (OSError, ValueError):
        pass
    strays = [pid for pid, host in _stray_nspawns().items() if host == name]  # pid file lost
    return strays[0] if strays else None


def _is_our_nspawn(pid, name):
    _reap(pid)
    try:
        cmd = Path("/proc/%d/cmdline" % pid).read_bytes().split(b"\0")
    except OSError:
        return False
    return (bool(cmd) and cmd[0].endswith(b"systemd-nspawn")
            and ("--directory=%s" % (_hdir(name) / "root")).encode() in cmd)


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (pytest API): don't leave a zombie
    except ChildProcessError:
        pass


def _host_record(name):
    d = _hdir(name)
    try:
        release = (d / "release").read_text().strip()
    except OSError:
        release = "?"
    index = int(name[3:]) if re.fullmatch(r"lab\d+", name) else 0
    return {"name": name, "index": index, "ip": host_ip(index) if index else "?", "release": release,
            "up": _nspawn_pid(name) is not None}


def status():
    names = sorted((p.name for p in HOSTS_DIR.iterdir() if p.is_dir()), key=lambda n: (len(n), n)) \
        if HOSTS_DIR.is_dir() else []
    return [_host_record(n) for n in names]


# ---------------------------------------------------------------- network

def _link_exists(dev):
    return run(["ip", "link", "show", "dev", dev], check=False).returncode == 0


def _ensure_bridge():
    if not _link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    if GATEWAY_IP + "/" not in run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout:
        run(["ip", "addr", "add", GATEWAY_IP + "/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def _setup_netns(h):
    ns, veth = NETNS_PREFIX + h["name"], VETH_PREFIX + h["name"]
    _delete_netns(ns, veth)
    run(["ip", "netns", "add", ns])
    # A fixed MAC per address, so ARP caches stay right when a host is recreated.
    mac = "02:00:%02x:%02x:%02x:%02x" % tuple(int(x) for x in h["ip"].split("."))
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns, "address", mac])
    run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "addr", "add", h["ip"] + "/24", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", GATEWAY_IP])
    run(["ip", "neigh", "flush", "to", h["ip"], "dev", BRIDGE], check=False)


def add_ipv6(names):
    """Give the machine (on the bridge) and the named running hosts their IPv6 addresses (fd42:199::/64 by default,
    for tests of what peers do over IPv6); returns {name: address}. A re-created host comes back without one."""
    _require_root()
    addresses = {}
    if GATEWAY_IP6 + "/" not in run(["ip", "-o", "-6", "addr", "show", "dev", BRIDGE]).stdout:
        run(["ip", "-6", "addr", "add", GATEWAY_IP6 + "/64", "dev", BRIDGE, "nodad"])
    for name in names:
        ns, ip6 = NETNS_PREFIX + name, host_ip6(int(name[3:]))
        if ip6 + "/" not in run(["ip", "-n", ns, "-o", "-6", "addr", "show", "dev", "eth0"]).stdout:
            run(["ip", "-n", ns, "-6", "addr", "add", ip6 + "/64", "dev", "eth0", "nodad"])
        addresses[name] = ip6
    return addresses


def _delete_netns(ns, veth):
    if _link_exists(veth):
        run(["ip", "link", "del", veth], check=False)
    if os.path.exists("/run/netns/" + ns):
        run(["ip", "netns", "del", ns], check=False)


# ---------------------------------------------------------------- one host

def _ensure_key():
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "llmops-ollama-lab", "-f", str(SSH_KEY)])
    return SSH_KEY.with_suffix(".pub").read_text()


def _harden(root):
    """Give the host the common hardening of login.defs' UMASK 027: every session (Ansible's over SSH too, through
    pam_umask) then makes files 0640 and folders 0750 unless told otherwise."""
    defs = root / "etc/login.defs"
    text = defs.read_text()
    defs.write_text(re.sub(r"(?m)^UMASK\s.*$", "UMASK\t\t027", text) if re.search(r"(?m)^UMASK\s", text)
                    else text + "UMASK\t\t027\n")


def _start_host(h, lower, pubkey):
    name, d = h["name"], _hdir(h["name"])
    _stop_host(name, quiet=True)  # leftovers of a crashed host: start fresh
    _rmtree(d)
    for sub in ("upper", "work", "root"):
        (d / sub).mkdir(parents=True)
    (d / "release").write_text(h["release"] + "\n")
    root = d / "root"
    run(["mount", "-t", "overlay", "overlay", "-o",
         "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, d / "upper", d / "work"), str(root)])
    (root / "etc/hostname").write_text(name + "\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 %s\n%s %s\n" % (name, h["ip"], name))
    (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
    if name in HARDENED:
        _harden(root)
    run(["ssh-keygen", "-A", "-f", str(root)])
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    _setup_netns(h)
    cmd = ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--settings=no", "--link-journal=no",
           "--console=read-only", "--resolv-conf=off", "--timezone=off", "--kill-signal=SIGRTMIN+4",
           "--network-namespace-path=/run/netns/" + NETNS_PREFIX + name,
           "--directory=%s" % root, "--machine=" + name]
    env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
    with open(d / "console.log", "wb") as console:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env, close_fds=True)
    (d / "pid").write_text("%d\n" % p.pid)
    # Until the child has exec'd, its command line is Python's, and the host would look stopped (_nspawn_pid).
    deadline = time.time() + 30
    while p.poll() is None and not _is_our_nspawn(p.pid, name) and time.time() < deadline:
        time.sleep(0.05)


def ssh(h, *command, timeout=60, check=False):
    """Run a command on a host over SSH; returns the CompletedProcess."""
    ip = h["ip"] if isinstance(h, dict) else h
    cmd = ["ssh", "-i", str(SSH_KEY)] + SSH_OPTS + ["root@" + ip] + list(command)
    try:
        return run(cmd, check=check, timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", "timed out")


def _port_open(ip, port=22):
    try:
        with socket.create_connection((ip, port), timeout=2):
            return True
    except OSError:
        return False


def _wait_host(h):
    """Wait until the host answers SSH and systemd finished booting; returns the system state."""
    deadline = time.time() + BOOT_TIMEOUT
    while not _port_open(h["ip"]):
        if _nspawn_pid(h["name"]) is None:
            raise BootStopped("%s stopped while booting; its console's last lines:\n%s"
                              % (h["name"], _console_tail(h["name"])))
        if time.time() > deadline:
            raise LabError("%s: sshd did not answer in %ds; see %s"
                           % (h["name"], BOOT_TIMEOUT, _hdir(h["name"]) / "console.log"))
        time.sleep(0.5)
    while True:
        state = ssh(h, "systemctl", "is-system-running", "--wait", timeout=max(5, deadline - time.time()))
        st = state.stdout.strip()
        if st in ("running", "degraded"):
            break
        if time.time() > deadline:
            raise LabError("%s: systemd did not finish booting (%s)" % (h["name"], st or state.stderr.strip()))
        time.sleep(1)
    if st == "degraded":
        failed = ssh(h, "systemctl", "list-units", "--failed", "--plain", "--no-legend").stdout.split("\n")
        st += " (failed: %s)" % ", ".join(line.split()[0] for line in failed if line.strip())
    return st


class BootStopped(LabError):
    """A host's systemd-nspawn ended before the host answered."""


def _console_tail(name, lines=15):
    try:
        text = (_hdir(name) / "console.log").read_text(errors="replace")
    except OSError as e:
        return "(no console log: %s)" % e
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join("  " + line for line in kept[-lines:]) or "  (empty)"


def _boot(h, lower, pubkey):
    """Wait for a started host; a host whose nspawn ended while booting is started once more (a host stopped just
    before can leave nspawn's locks and mounts behind for a moment on a loaded machine)."""
    try:
        return _wait_host(h)
    except BootStopped as e:
        log("%s; starting it once more" % e)
        time.sleep(2)
        _start_host(h, lower, pubkey)
        return _wait_host(h)


def _stop_host(name, quiet=False):
    """Stop one host and undo its mounts and network namespace (keeps its state folder).

    Polite first (nspawn turns SIGTERM into --kill-signal, a clean poweroff), then SIGRTMIN+14 to the
    container's init (immediate poweroff), then SIGKILL. Also works when nspawn is gone (crash): the host's
    processes are found by their network namespace."""
    pid, ns, root = _nspawn_pid(name), NETNS_PREFIX + name, _hdir(name) / "root"
    lock = None
    if os.path.ismount(root):
        st = os.stat(root)  # nspawn's global image lock, left behind when nspawn is killed
        lock = Path("/run/systemd/nspawn/locks/inode-%d:%d" % (st.st_dev, st.st_ino))

    def alive():
        return (pid and _is_our_nspawn(pid, name)) or _procs_in_netns(ns)

    if alive():
        if not quiet:
            log("stopping %s" % name)
        if pid:
            _signal([pid], signal.SIGTERM)
        else:
            _signal(_container_inits(ns), signal.SIGRTMIN + 4)
        for sig, label, wait in ((signal.SIGRTMIN + 14, "SIGRTMIN+14", 15), (signal.SIGKILL, "SIGKILL", 5),
                                 (None, None, 5)):
            _wait_gone(alive, wait)
            if not alive() or sig is None:
                break
            log("%s did not stop in %ds; sending %s" % (name, wait, label))
            _signal(_container_inits(ns) if sig != signal.SIGKILL else
                    _procs_in_netns(ns) + ([pid] if pid and _is_our_nspawn(pid, name) else []), sig)
        if alive():
            log("%s: some processes would not die: %s" % (name, _procs_in_netns(ns)))
    if lock and lock.exists():
        lock.unlink()
    try:
        os.rmdir("/run/systemd/nspawn/propagate/" + name)  # nspawn can't remove it when /run is not tmpfs
    except OSError:
        pass
    _umount_under(_hdir(name))
    _delete_netns(ns, VETH_PREFIX + name)


def _signal(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def _wait_gone(alive, seconds):
    deadline = time.time() + seconds
    while alive() and time.time() < deadline:
        time.sleep(0.2)


def _procs_in_netns(ns):
    """Pids of the processes inside network namespace `ns`: exactly one lab host's processes."""
    try:
        target = os.stat("/run/netns/" + ns)
    except OSError:
        return []
    pids = []
    for p in glob.glob("/proc/[0-9]*"):
        try:
            st = os.stat(p + "/ns/net")
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                pids.append(int(p[6:]))
        except OSError:
            pass
    return pids


def _container_inits(ns):
    """The host's init: the process in its network namespace that is pid 1 of its own pid namespace."""
    inits = []
    for pid in _procs_in_netns(ns):
        try:
            nspid = re.search(r"^NSpid:\s*(.*)$", Path("/proc/%d/status" % pid).read_text(), re.M).group(1)
        except (OSError, AttributeError):
            continue
        if len(nspid.split()) > 1 and nspid.split()[-1] == "1":
            inits.append(pid)
    return inits


def _mountpoints():
    return [re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _umount_under(path):
    prefix = str(path).rstrip("/") + "/"
    for mp in sorted((m for m in _mountpoints() if (m + "/").startswith(prefix)), key=len, reverse=True):
        if run(["umount", mp], check=False).returncode:
            run(["umount", "-l", mp], check=False)


# ---------------------------------------------------------------- inventory

def _write_inventory(hosts):
    key = str(SSH_KEY)
    lines = ["# Written by `python3 -m tests.lab.fleet up`; do not edit.", "all:", "  vars:",
             "    ansible_user: root", "    ansible_ssh_private_key_file: " + key,
             "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
             "    ansible_python_interpreter: /usr/bin/python3", "  hosts:"]
    for h in hosts:
        lines += ["    %s:" % h["name"], "      ansible_host: " + h["ip"], "      lab_release: " + h["release"]]
    groups = {"ollama_servers": hosts, "workstations": [h for h in hosts if h["index"] % 2],
              "gpu_servers": [h for h in hosts if not h["index"] % 2], "codex_clients": hosts}
    lines.append("  children:")
    for group, members in groups.items():
        lines.append("    %s:" % group)
        lines.append("      hosts:" + ("" if members else " {}"))
        lines += ["        %s:" % h["name"] for h in members]
    _atomic_write(inventory_path(), "\n".join(lines) + "\n")
    cfg = ["# ssh -F %s lab1" % ssh_config_path()]
    for h in hosts:
        cfg += ["Host %s" % h["name"], "  HostName %s" % h["ip"]]
    cfg += ["Host lab* %s" % " ".join(h["ip"] for h in hosts), "  User root", "  IdentityFile " + key,
            "  IdentitiesOnly yes", "  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null",
            "  LogLevel ERROR"]
    _atomic_write(ssh_config_path(), "\n".join(cfg) + "\n")


def _atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.rename(path)


# ---------------------------------------------------------------- API

def up(n_hosts=3, releases=RELEASES):
    """Make sure hosts lab1..labN are running; return all running hosts as dicts (name, index, ip, release)."""
    _require_root()
    releases = tuple(releases)
    if n_hosts < 1 or n_hosts > 200 or not releases:
        raise LabError("need 1..200 hosts and at least one release")
    wanted = plan(n_hosts, releases)
    running = {h["name"]: h for h in status() if h["up"]}
    for h in wanted:
        if h["name"] in running and running[h["name"]]["release"] != h["release"]:
            log("%s is up with %s (not %s); run `down` to change releases"
                % (h["name"], running[h["name"]]["release"], h["release"]))
    todo = [h for h in wanted if h["name"] not in running]
    if running:
        log("already up: %s" % ", ".join(sorted(running, key=lambda n: running[n]["index"])))
    LAB_STATE.mkdir(parents=True, exist_ok=True)
    pubkey = _ensure_key()
    if todo:
        lowers = ensure_rootfs(sorted({h["release"] for h in todo}, key=releases.index))
        _ensure_bridge()
        t0 = time.time()
        log("booting %s" % ", ".join(h["name"] for h in todo))
        for h in todo:
            _start_host(h, lowers[h["release"]], pubkey)
        with concurrent.futures.ThreadPoolExecutor(min(len(todo), 16)) as pool:
            futures = {h["name"]: pool.submit(_boot, h, lowers[h["release"]], pubkey) for h in todo}
            errors = []
            for h in todo:
                try:
                    log("%s %s (%s) %s" % (h["name"], h["ip"], h["release"], futures[h["name"]].result()))
                except LabError as e:
                    errors.append(str(e))
        if errors:
            raise LabError("; ".join(errors) + " -- `python3 -m tests.lab.fleet down` cleans up")
        log("%d host(s) booted in %.0fs" % (len(todo), time.time() - t0))
    hosts = sorted({**running, **{h["name"]: h for h in wanted}}.values(), key=lambda h: h["index"])
    hosts = [{k: v for k, v in h.items() if k != "up"} for h in hosts]
    _write_inventory(hosts)
    log("inventory: %s" % inventory_path())
    return hosts


def bytes_sent(names):
    """Bytes each named host has sent on the lab network so far, and the machine's (controller, mirror, registry:
    everything the machine sent the fleet), as {name: bytes, "machine": bytes}. A host's are what its veth peer on the
    bridge received; the machine's what the bridge sent up from it (the kernel's interface counters)."""
    def counter(dev, which):
        with open("/sys/class/net/%s/statistics/%s_bytes" % (dev, which)) as f:
            return int(f.read())
    sent = {name: counter(VETH_PREFIX + name, "rx") for name in names}
    sent["machine"] = counter(BRIDGE, "tx")
    return sent


def reset(names):
    """Stop the named hosts; the next up() boots them fresh from the cached rootfs (their changes are dropped)."""
    _require_root()
    for name in names:
        _stop_host(name)


def down():
    """Stop every lab host and remove the lab's network and host state (keeps the rootfs cache and key)."""
    _require_root()
    names = {p.name for p in HOSTS_DIR.iterdir()} if HOSTS_DIR.is_dir() else set()
    names |= {n[len(NETNS_PREFIX):] for n in os.listdir("/run/netns") if n.startswith(NETNS_PREFIX)} \
        if os.path.isdir("/run/netns") else set()
    names |= set(_stray_nspawns().values())
    with concurrent.futures.ThreadPoolExecutor(max(1, min(len(names), 16))) as pool:
        list(pool.map(_stop_host, sorted(names)))
    _rmtree(HOSTS_DIR)
    for line in run(["ip", "-o", "link", "show"]).stdout.splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        if dev.startswith(VETH_PREFIX):
            run(["ip", "link", "del", dev], check=False)
    if _link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])
    for f in (inventory_path(), ssh_config_path()):
        if f.exists():
            f.unlink()
    log("lab is down" + (" (%s)" % ", ".join(sorted(names)) if names else ""))


def _stray_nspawns():
    """{pid: host name} of systemd-nspawn processes booting a root under this lab's hosts folder."""
    found = {}
    needle = ("--directory=%s/" % HOSTS_DIR).encode()
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            cmd = Path(p).read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in cmd:
            if cmd[0].endswith(b"systemd-nspawn") and arg.startswith(needle):
                found[int(p.split("/")[2])] = arg[len(needle):].split(b"/")[0].decode()
    return found


# ---------------------------------------------------------------- CLI

def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m tests.lab.fleet", description=__doc__.split("\n", maxsplit=1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start lab1..labN (idempotent)")
    p_up.add_argument("--hosts", type=int, default=3)
    p_up.add_argument("--releases", default=",".join(RELEASES), help="comma-separated, alternated over hosts")
    sub.add_parser("down", help="stop all hosts, remove network and host state (keeps the rootfs cache)")
    sub.add_parser("status", help="one line per host")
    p_exec = sub.add_parser("exec", help="run a command on a host over SSH: exec lab1 -- CMD...")
    p_exec.add_argument("name")
    p_exec.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            up(args.hosts, [r for r in args.releases.split(",") if r])
        elif args.cmd == "down":
            down()
        elif args.cmd == "status":
            hosts = status()
            if not hosts:
                print("no lab hosts")
            for h in hosts:
                print("%-6s %-12s %-9s %s" % (h["name"], h["ip"], h["release"], "up" if h["up"] else "down"))
        elif args.cmd == "exec":
            command = args.command[1:] if args.command[:1] == ["--"] else args.command
            h = _host_record(args.name)
            if not h["up"]:
                raise LabError("%s is not up (see `status`)" % args.name)
            tty = [] if command else ["-t"]
            return subprocess.call(["ssh"] + tty + ["-i", str(SSH_KEY)] + SSH_OPTS + ["root@" + h["ip"]] + command)
    except LabError as e:
        print("lab: error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lab: interrupted; `python3 -m tests.lab.fleet down` cleans up", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (kill debootstrap, remove partial trees) like Ctrl-C
    sys.exit(main())
