"""A Python kernel for untrusted code: isolated where the machine allows it, and killed with all it started.

The autograder (`minivid.course`) runs each student's notebook in a `Kernel` from here. Two ways to run:

* ``"namespaces"`` (Linux, run as root, `unshare` from util-linux present; what CI and a grading server
  use). The kernel gets new PID, mount, network, IPC and hostname namespaces. Its file system is a fresh
  in-memory root holding only what Python needs, read-only: the system folders (``/usr``, ``/etc``, ...),
  the Python installation and virtual environment, and the ``minivid`` package; plus an empty writable
  home and ``/tmp``. The instructor's solutions, the other submissions, the grade sheet and the feedback
  folder are not in it at all. The kernel runs as the unprivileged user ``nobody`` with a scrubbed
  environment, no network (only a loopback device that is down), and limits on processes, file size and
  core dumps. Killing it kills the namespace's first process, and Linux then kills every process in the
  namespace, ``setsid`` daemons included.
* ``"process group"`` (anywhere else: not root, macOS, no `unshare`). The kernel runs as the grader's own
  user in its own session, with a scrubbed environment and an empty working folder; a kill stops its
  process group. This does **not** stop the student's code from reading or writing any file the grader's
  user can (the solutions included), from using the network, or from leaving a process behind that called
  ``setsid`` itself. Grade untrusted work on a machine where ``"namespaces"`` is available.

`mode()` says which one this machine gets. The kernel talks to the grader over Unix sockets in a folder the
two share (ZeroMQ's ``ipc`` transport), which works across the network namespace.

This file also runs as a script: ``python sandbox.py enter CONFIG`` is the first process inside the new
namespaces; it builds the root, drops privileges and becomes the kernel. It imports only the standard
library, so that it starts in milliseconds.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

KERNEL_USER = 65534  # `nobody`: owns no files, so it can write none outside the kernel's own folders
HOME = "/home/student"  # the kernel's working folder, empty at start
ROOT_SIZE = "512m"  # the in-memory root (home and /tmp included) cannot grow past this
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
MAX_PROCESSES = 1024  # per user: stops a fork bomb (torch's threads count too)
MAX_FILE_BYTES = 256 * 2**20
MAX_TEXT = 10_000  # characters of printed output kept per request
NAMESPACES = ["--pid", "--fork", "--kill-child", "--mount", "--net", "--ipc", "--uts"]

# mount(2) flags
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC = 1, 2, 4, 8, 32, 4096, 16384


# --------------------------------------------------------------------------------------------
# which isolation this machine allows
# --------------------------------------------------------------------------------------------

_mode = None


def mode() -> str:
    """"namespaces" where the kernel can be isolated as described above, else "process group".

    The test is a real one: Python must start in the isolated root, as `nobody`.
    """
    global _mode
    if _mode is None:
        _mode = "process group"
        if sys.platform.startswith("linux") and os.geteuid() == 0 and shutil.which("unshare"):
            with tempfile.TemporaryDirectory(prefix="minivid-sandbox-") as folder:
                trial = _isolated([sys.executable, "-c", "pass"], Path(folder))
                if subprocess.run(trial, cwd=folder, env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=60).returncode == 0:
                    _mode = "namespaces"
    return _mode


def _isolated(command: list[str], folder: Path, sockets: Path | None = None) -> list[str]:
    """`command` wrapped to run as described above, its root file system mounted on folder/root."""
    (folder / "root").mkdir(exist_ok=True)
    config = {"root": str(folder / "root"), "sockets": None if sockets is None else str(sockets),
              "read_only": visible_paths(), "command": command, "env": _environment(HOME)}
    return [shutil.which("unshare"), *NAMESPACES, sys.executable, "-I", __file__, "enter", json.dumps(config)]


def visible_paths() -> list[str]:
    """What the kernel's root holds, read-only: system folders, the Python install and the minivid package."""
    package = str(Path(__file__).resolve().parent)
    paths = [p for p in SYSTEM_FOLDERS if os.path.lexists(p)]
    for p in (sys.base_prefix, sys.prefix, package):
        p = os.path.realpath(p)
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in paths):
            paths.append(p)
    return paths


# --------------------------------------------------------------------------------------------
# the grader's side: start, talk to, and kill a kernel
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one request to the kernel did: "ok", "error", "timeout" or "died"; printed text; JSON displays."""
    status: str = "ok"
    error: tuple[str, str] | None = None  # (exception name, message) of an uncaught exception
    text: str = ""
    displays: list[dict] = field(default_factory=list)  # data of display messages with the requested MIME type


class KernelDied(RuntimeError):
    pass


def _environment(home: str) -> dict:
    """The kernel's whole environment: nothing of the grader's (no tokens, no paths to its files)."""
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home,
            "MPLCONFIGDIR": f"{home}/.matplotlib", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1"}


class Kernel:
    """A Python kernel in `folder` (a fresh temporary folder the caller removes), isolated as `mode()` allows.

        with Kernel(folder) as kernel:
            outcome = kernel.execute("x = 1", timeout=20)
    """

    def __init__(self, folder, startup_timeout: float = 120):
        self.folder = Path(folder)
        self.mode = mode()
        self.startup_timeout = startup_timeout
        self.process = self.client = None
        self.starts = 0

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc):
        self.kill()

    def start(self) -> None:
        """Start a fresh kernel (killing any running one) and wait until it answers."""
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self.kill()
        self.starts += 1
        sockets = self.folder / f"kernel-{self.starts}"  # connection file and Unix sockets, shared with the kernel
        sockets.mkdir(mode=0o700)
        connection = sockets / "connection.json"
        write_connection_file(str(connection), transport="ipc", ip=str(sockets / "ipc"),
                              key=secrets.token_hex(32).encode())
        kernel = [sys.executable, "-m", "ipykernel_launcher", "-f", str(connection), "--HistoryManager.enabled=False"]
        if self.mode == "namespaces":
            for path in (sockets, connection):
                os.chown(path, KERNEL_USER, KERNEL_USER)
            command, cwd, env = _isolated(kernel, self.folder, sockets), self.folder, {"PATH": "/usr/bin:/bin"}
        else:
            home = self.folder / f"home-{self.starts}"
            home.mkdir(mode=0o700)
            command, cwd, env = kernel, home, _environment(str(home))
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        self.client = BlockingKernelClient(connection_file=str(connection))
        self.client.load_connection_file()
        self.client.start_channels()
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        msg_id = self.client.kernel_info()
        while time.monotonic() < deadline:
            if not self.alive():
                raise KernelDied("the kernel exited while starting")
            try:
                reply = self.client.get_shell_msg(timeout=0.2)
            except queue.Empty:
                continue
            if reply["parent_header"].get("msg_id") == msg_id:
                self._drain_iopub()
                return
        raise KernelDied(f"the kernel did not start within {self.startup_timeout:g} s")

    def _drain_iopub(self) -> None:
        while True:
            try:
                self.client.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                return

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def execute(self, code: str, timeout: float, mime: str | None = None) -> Outcome:
        """Run `code`; past `timeout` seconds the kernel is killed (status "timeout"), never just interrupted."""
        if not self.alive():
            raise KernelDied("the kernel is not running")
        msg_id = self.client.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        deadline = time.monotonic() + timeout
        outcome = Outcome()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                outcome.status = "timeout"
                return outcome
            try:
                msg = self.client.get_iopub_msg(timeout=min(remaining, 0.2))
            except queue.Empty:
                if not self.alive():
                    self.kill()
                    outcome.status = "died"
                    return outcome
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and len(outcome.text) < MAX_TEXT:
                outcome.text = (outcome.text + str(content.get("text", "")))[:MAX_TEXT]
            elif kind == "error":
                outcome.status = "error"
                outcome.error = (str(content.get("ename", "")), str(content.get("evalue", "")))
            elif kind in ("display_data", "execute_result") and mime and mime in content.get("data", {}):
                outcome.displays.append(content["data"][mime])
            elif kind == "status" and content.get("execution_state") == "idle":
                return outcome

    def kill(self) -> None:
        """Stop the kernel and everything it started (the whole namespace, or the process group)."""
        if self.client is not None:
            self.client.stop_channels()
            self.client = None
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
            self.process = None


# --------------------------------------------------------------------------------------------
# the first process inside the namespaces (runs as root, then becomes the kernel as `nobody`)
# --------------------------------------------------------------------------------------------


def _mount(source, target, fstype=None, flags=0, options=None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    args = [None if a is None else str(a).encode() for a in (source, target, fstype)]
    if libc.mount(*args, ctypes.c_ulong(flags), None if options is None else options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _bind(path: str, root: str, writable: bool = False, device: bool = False) -> None:
    """Show host `path` at the same place under `root`: read-only unless `writable`, device files only if `device`."""
    target = root + path
    if os.path.islink(path):  # e.g. /bin -> usr/bin on merged-/usr systems
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "a").close()
    _mount(path, target, flags=MS_BIND | MS_REC)
    _mount(None, target, flags=MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if device else MS_NODEV) | (0 if writable else MS_RDONLY))


def enter(config: dict) -> None:
    """Build the kernel's root file system, drop every privilege, and exec the kernel."""
    import resource

    root = config["root"]
    os.umask(0o022)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={ROOT_SIZE},mode=755")
    for path in config["read_only"]:
        _bind(path, root)
    if config["sockets"] is not None:
        _bind(config["sockets"], root, writable=True)
    for device in ("null", "zero", "full", "random", "urandom"):
        _bind(f"/dev/{device}", root, writable=True, device=True)
    os.makedirs(root + "/dev/shm", mode=0o1777)
    os.chmod(root + "/dev/shm", 0o1777)
    os.symlink("/proc/self/fd", root + "/dev/fd")
    os.makedirs(root + "/proc")
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for folder, mode_bits in (("/tmp", 0o1777), (HOME, 0o700)):
        os.makedirs(root + folder, exist_ok=True)
        os.chmod(root + folder, mode_bits)
    os.chown(root + HOME, KERNEL_USER, KERNEL_USER)

    os.chroot(root)
    os.chdir(HOME)
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setgroups([])
    os.setgid(KERNEL_USER)
    os.setuid(KERNEL_USER)  # from here on, no capabilities: the root above cannot be left or changed
    PR_SET_NO_NEW_PRIVS = 38
    ctypes.CDLL(None).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    command = config["command"]
    os.execve(command[0], command, config["env"])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "enter":
        sys.exit("usage: python sandbox.py enter CONFIG_JSON (started by minivid.sandbox.Kernel)")
    enter(json.loads(sys.argv[2]))
