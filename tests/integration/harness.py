"""Process harness for the `tern` broker used by the integration tests.

`Broker` starts `$TERN_BIN serve` on a free loopback port with its own log
directory, waits until the port accepts TCP connections, and offers stop()
(SIGTERM, expects exit code 0), kill9(), restart() (same port and data dir)
and cleanup().  The broker's stderr goes to a file whose tail is attached to
the report of any failing test (see conftest.py).
"""

import ctypes
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


class BrokerError(AssertionError):
    pass


# Ports this process has handed out. The kernel may return the same port for
# two bind(:0) calls in a row once the first socket is closed, so two listeners
# of one broker (or two brokers of one cluster) could get the same port; CI saw
# "two listeners on 127.0.0.1:42337". A port is handed out at most once per run.
_HANDED_OUT = set()
_HANDED_OUT_LIMIT = 16384


def free_port():
    """A loopback port that was free a moment ago (bind :0, read, close) and
    that this process has not handed out before."""
    if len(_HANDED_OUT) >= _HANDED_OUT_LIMIT:
        _HANDED_OUT.clear()
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise BrokerError("no free loopback port that was not handed out already")


def resolve_tern_bin():
    """Absolute path of the broker binary from $TERN_BIN (default target/release/tern)."""
    raw = os.environ.get("TERN_BIN") or "target/release/tern"
    p = pathlib.Path(raw)
    if not p.is_absolute():
        cwd_candidate = pathlib.Path.cwd() / p
        p = cwd_candidate if cwd_candidate.exists() else REPO_ROOT / p
    return p


def _die_with_parent():
    # Make sure a broker never outlives the test run (e.g. pytest killed by a
    # timeout): PR_SET_PDEATHSIG = 1, SIGKILL = 9.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def listening_on(port):
    """Whether any TCP socket listens on `port` (state 0A in /proc/net/tcp and tcp6)."""
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == "0A" and fields[1].endswith(want):
                        return True
        except FileNotFoundError:
            continue
    return False


class Broker:
    def __init__(self, binary, workdir, name="broker", extra_args=(), config=None,
                 default_args=True, shards=2, port=None, log_dir=None, env=None):
        self.binary = pathlib.Path(binary)
        self.workdir = pathlib.Path(workdir)
        self.name = name
        self.extra_args = [str(a) for a in extra_args]
        self.config = config
        self.default_args = default_args
        self.shards = shards
        self.port = port if port is not None else free_port()
        self.log_dir = pathlib.Path(log_dir) if log_dir else self.workdir / f"{name}-data"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.workdir / f"{name}.stderr.log"
        self.env = dict(os.environ)
        self.env.setdefault("RUST_LOG", "info")
        self.env.setdefault("RUST_BACKTRACE", "1")
        if env:
            self.env.update(env)
        self.proc = None
        self._stderr_file = None
        self.starts = 0
        self.exit_codes = []

    # ------------------------------------------------------------------ info
    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def listener(self):
        return f"PLAINTEXT://127.0.0.1:{self.port}"

    def command(self):
        cmd = [str(self.binary), "serve"]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        if self.default_args:
            cmd += [
                "--listeners", self.listener,
                "--advertised-listeners", self.listener,
                "--log-dirs", str(self.log_dir),
                "--shards", str(self.shards),
            ]
        if "--metrics-listener" not in self.extra_args:
            # Tests serve only on loopback: no metrics endpoint on the default 0.0.0.0:9644.
            cmd += ["--metrics-listener", "none"]
        cmd += self.extra_args
        return cmd

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines=60):
        text = self.stderr_text().splitlines()
        return "\n".join(text[-lines:])

    def partition_dir(self, topic, partition):
        return self.log_dir / f"{topic}-{partition}"

    # ------------------------------------------------------------- lifecycle
    def start(self, wait=True):
        if self.running():
            raise BrokerError(f"{self.name} is already running")
        self.starts += 1
        self._stderr_file = open(self.stderr_path, "ab", buffering=0)
        cmd = self.command()
        self._stderr_file.write(
            f"===== [harness] start #{self.starts}: {' '.join(cmd)}\n".encode())
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._stderr_file,
            stderr=self._stderr_file,
            env=self.env,
            cwd=str(self.workdir),
            preexec_fn=_die_with_parent,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self._closed(rc)
                raise BrokerError(
                    f"{self.name} exited with code {rc} before accepting connections "
                    f"on {self.bootstrap}; stderr tail:\n{self.stderr_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"{self.name} did not accept TCP connections on {self.bootstrap} "
                    f"within {timeout}s; stderr tail:\n{self.stderr_tail()}")
            time.sleep(0.05)

    def _closed(self, rc):
        self._wait_listener_gone()
        self.exit_codes.append(rc)
        if self._stderr_file is not None:
            self._stderr_file.write(f"===== [harness] exited with code {rc}\n".encode())
            self._stderr_file.close()
            self._stderr_file = None

    def signal_and_wait(self, sig, timeout=STOP_TIMEOUT):
        """Send `sig`, wait for exit, return the exit code (SIGKILL after timeout)."""
        if not self.running():
            raise BrokerError(f"{self.name} is not running (exit codes so far {self.exit_codes})")
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stacks = self.thread_stacks()
            self.proc.kill()
            rc = self.proc.wait(timeout=timeout)
            self._closed(rc)
            raise BrokerError(
                f"{self.name} did not exit within {timeout}s after {signal.Signals(sig).name}{stacks}; "
                f"killed it. stderr tail:\n{self.stderr_tail()}")
        self._closed(rc)
        return rc

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Clean shutdown; asserts exit code 0."""
        rc = self.signal_and_wait(sig, timeout)
        if rc != 0:
            raise BrokerError(
                f"{self.name} exited with code {rc} after {signal.Signals(sig).name} "
                f"(expected 0); stderr tail:\n{self.stderr_tail()}")

    def kill9(self):
        """Unclean stop: SIGKILL and reap."""
        if not self.running():
            raise BrokerError(f"{self.name} is not running (exit codes so far {self.exit_codes})")
        self.proc.kill()
        rc = self.proc.wait(timeout=STOP_TIMEOUT)
        self._closed(rc)

    def _wait_listener_gone(self, timeout=STOP_TIMEOUT):
        """After an exit the kernel may keep the dead process's listening socket open for a
        moment after it is reaped (io_uring tears down its ring, and the sockets it references,
        asynchronously), after kill -9 and a clean exit alike.
        With SO_REUSEPORT a restarted broker binds beside it, and a connection queued on the
        dead socket is reset when it finally closes; a readiness probe could even be answered by
        it. So wait until no socket listens on the port any more."""
        deadline = time.monotonic() + timeout
        while listening_on(self.port):
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"{self.name}: port {self.port} still has a listener {timeout}s after exit")
            time.sleep(0.02)

    def restart(self, wait=True):
        """Clean stop (if running) and start again on the same port and data dir."""
        if self.running():
            self.stop()
        return self.start(wait=wait)

    def thread_stacks(self):
        """The stuck process's thread stacks (gdb, when installed), for a hang's report."""
        gdb = shutil.which("gdb")
        if gdb is None or self.proc is None:
            return ""
        try:
            out = subprocess.run([gdb, "-p", str(self.proc.pid), "-batch", "-ex",
                                  "thread apply all bt 30"], capture_output=True, text=True,
                                 timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"\n(gdb failed: {e})"
        keep = [ln for ln in out.splitlines() if ln.startswith(("Thread ", "#"))]
        return "\nthread stacks (gdb):\n" + "\n".join(keep[-400:])

    def cleanup(self):
        """Stop the broker if it still runs.  Returns a problem description
        (clean shutdown failed: non-zero exit or no exit within 10 s) or None."""
        if self.proc is None:
            return None
        problem = None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                rc = self.proc.wait(timeout=10)
                if rc != 0:
                    problem = f"{self.name}: exit code {rc} after SIGTERM at teardown (expected 0)"
            except subprocess.TimeoutExpired:
                stacks = self.thread_stacks()
                self.proc.kill()
                rc = self.proc.wait(timeout=10)
                problem = (f"{self.name}: did not exit within 10s of SIGTERM at teardown (killed)"
                           f"{stacks}")
            self._closed(rc)
        elif self._stderr_file is not None:
            self._closed(self.proc.returncode)
        return problem
