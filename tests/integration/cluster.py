"""Multi-process cluster fixture: N real `tern` processes on loopback as one KRaft-style cluster.

`Cluster(tern_bin, tmp_path, n, mode="combined"|"separate", extra={...})` writes one properties
file per node with Kafka's KRaft names (`node.id`, `process.roles`, `controller.quorum.voters`,
`listeners=PLAINTEXT://127.0.0.1:P,CONTROLLER://127.0.0.1:C`, `controller.listener.names`,
`log.dirs`) and runs each node as `tern serve --config <file> --shards 1` through harness.Broker
(free ports, stderr capture, listener-gone wait). "combined": nodes 1..n are
broker+controller voters. "separate": nodes 1..3 are controller-only voters and nodes 4..3+n
broker-only (ids shifted by `first_node_id` - 1). `extra_node()` adds a process outside that
layout (a duplicate node.id, a data dir of another cluster). With `metrics=True` every node
serves its Prometheus endpoint on a loopback port (`node.metric(name)`). Per node: start, kill9, sigstop, sigcont, restart, wait_exit. `wait_ready()` waits
until a broker's Metadata lists the n brokers. `cleanup()` SIGCONTs and SIGKILLs every process
it started, whatever state it is in. Every wait is bounded.
"""

import signal
import subprocess
import time
import urllib.request

import kmatrix
from harness import Broker, free_port, listening_on

READY_TIMEOUT = 60.0
CONTROLLERS_SEPARATE = 3
API_METADATA = 3
API_DESCRIBE_QUORUM = 55
API_DESCRIBE_CLUSTER = 60
METADATA_TOPIC = "__cluster_metadata"


class ClusterError(AssertionError):
    pass


class Node:
    """One `tern` process of the cluster (a harness.Broker underneath)."""

    def __init__(self, cluster, node_id, roles, broker_port, controller_port, extra, name=None):
        name = name or f"node{node_id}"
        self.cluster = cluster
        self.node_id = node_id
        self.roles = roles
        self.broker_port = broker_port
        self.controller_port = controller_port
        self.extra = dict(extra)
        self.log_dir = cluster.workdir / f"{name}-data"
        self.config_path = cluster.workdir / f"{name}.properties"
        # `Cluster(metrics=True)`: each node serves GET /metrics on its own loopback port.
        self.metrics_port = free_port() if cluster.metrics else None
        metrics_args = (["--metrics-listener", f"127.0.0.1:{self.metrics_port}"]
                        if self.metrics_port else [])
        # harness.Broker waits for, and after exit waits for the end of, `port`: the broker
        # listener, or the controller listener on a controller-only node.
        self.proc = Broker(cluster.tern_bin, cluster.workdir, name=name,
                           config=self.config_path, default_args=False,
                           extra_args=["--shards", str(cluster.shards), *metrics_args],
                           port=broker_port if self.is_broker else controller_port,
                           log_dir=self.log_dir, env=cluster.env)
        self.stopped = False

    # ------------------------------------------------------------------ info
    @property
    def is_broker(self):
        return "broker" in self.roles

    @property
    def is_controller(self):
        return "controller" in self.roles

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.broker_port}"

    @property
    def name(self):
        return self.proc.name

    def running(self):
        return self.proc.running()

    def metrics(self):
        """This node's Prometheus text (`Cluster(metrics=True)` only)."""
        assert self.metrics_port, "the cluster was made without metrics=True"
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return urllib.request.urlopen(url, timeout=10).read().decode()

    def metric(self, name):
        """The value of an unlabelled metric `name` on this node (None when absent)."""
        for line in self.metrics().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def properties(self):
        listeners = []
        if self.is_broker:
            listeners.append(f"PLAINTEXT://127.0.0.1:{self.broker_port}")
        if self.is_controller:
            listeners.append(f"CONTROLLER://127.0.0.1:{self.controller_port}")
        props = {
            "node.id": str(self.node_id),
            "process.roles": self.roles,
            "controller.quorum.voters": self.cluster.voters,
            "listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.log_dir),
        }
        props.update(self.cluster.extra)
        props.update(self.extra)
        return props

    def write_config(self):
        text = "".join(f"{k}={v}\n" for k, v in self.properties().items())
        self.config_path.write_text(text)

    def stderr_tail(self, lines=60):
        return self.proc.stderr_tail(lines)

    # ------------------------------------------------------------- lifecycle
    def start(self, wait=True):
        self.write_config()
        self.stopped = False
        self.proc.start(wait=wait)
        return self

    def _wait_controller_port_gone(self, timeout=30.0):
        if not (self.is_controller and self.is_broker):
            return  # the harness waited for the only port already
        deadline = time.monotonic() + timeout
        while listening_on(self.controller_port):
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name}: controller port {self.controller_port} still "
                                   f"has a listener {timeout}s after exit")
            time.sleep(0.02)

    def kill9(self):
        if self.stopped:
            self.sigcont()
        self.proc.kill9()
        self._wait_controller_port_gone()

    def sigstop(self):
        assert self.running(), f"{self.name} is not running"
        self.proc.proc.send_signal(signal.SIGSTOP)
        self.stopped = True

    def sigcont(self):
        if self.proc.proc is not None and self.proc.proc.poll() is None:
            self.proc.proc.send_signal(signal.SIGCONT)
        self.stopped = False

    def stop(self):
        """Clean stop (SIGTERM); returns the exit code."""
        if self.stopped:
            self.sigcont()
        rc = self.proc.signal_and_wait(signal.SIGTERM)
        self._wait_controller_port_gone()
        return rc

    def restart(self, wait=True):
        """kill -9 (if running) and start again with the same ports and data dir."""
        if self.running():
            self.kill9()
        return self.start(wait=wait)

    def wait_exit(self, timeout=60.0):
        """Waits for the process to exit by itself (e.g. a refused start); returns the code."""
        try:
            rc = self.proc.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{self.name} did not exit within {timeout}s; stderr tail:\n"
                               f"{self.stderr_tail()}") from None
        self.proc._closed(rc)
        self._wait_controller_port_gone()
        return rc

    def kill_at_cleanup(self):
        p = self.proc.proc
        if p is None:
            return
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.kill()
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        if p.poll() is not None and self.proc._stderr_file is not None:
            self.proc.exit_codes.append(p.returncode)
            self.proc._stderr_file.close()
            self.proc._stderr_file = None


class Cluster:
    def __init__(self, tern_bin, tmp_path, n, mode="combined", extra=None, node_extra=None,
                 shards=1, env=None, first_node_id=1, track=None, metrics=False):
        assert mode in ("combined", "separate"), mode
        assert n >= 1
        self.tern_bin = tern_bin
        self.workdir = tmp_path
        self.mode = mode
        self.n = n
        self.extra = {k: str(v) for k, v in (extra or {}).items()}
        self.shards = shards
        self.env = env
        self.metrics = metrics
        f = first_node_id
        if mode == "combined":
            layout = [(f + i, "broker,controller") for i in range(n)]
        else:
            layout = [(f + i, "controller") for i in range(CONTROLLERS_SEPARATE)]
            layout += [(f + CONTROLLERS_SEPARATE + i, "broker") for i in range(n)]
        self.extras = []
        # A list (conftest's `_tern_brokers`) that gets every process's harness.Broker, for the
        # stderr tails of a failing test.
        self.track = track if track is not None else []
        ports = {}
        for node_id, roles in layout:
            b = free_port() if "broker" in roles else None
            c = free_port() if "controller" in roles else None
            ports[node_id] = (b, c)
        self.voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in ports.items()
                               if c is not None)
        self.nodes = {}
        for node_id, roles in layout:
            b, c = ports[node_id]
            self.nodes[node_id] = Node(self, node_id, roles, b, c,
                                       (node_extra or {}).get(node_id, {}))
            self.track.append(self.nodes[node_id].proc)

    def extra_node(self, node_id, name, roles="broker", extra=None):
        """A process outside the cluster's layout (not waited for by wait_ready), started by
        the test; its own ports and data dir (`<name>-data`) unless `extra` says otherwise."""
        b = free_port() if "broker" in roles else None
        c = free_port() if "controller" in roles else None
        n = Node(self, node_id, roles, b, c, extra or {}, name=name)
        self.extras.append(n)
        self.track.append(n.proc)
        return n

    # ------------------------------------------------------------------ info
    def node(self, node_id):
        return self.nodes[node_id]

    def broker_nodes(self):
        return [n for n in self.nodes.values() if n.is_broker]

    def controller_nodes(self):
        return [n for n in self.nodes.values() if n.is_controller]

    def harness_brokers(self):
        """The harness.Broker of every node (for conftest's stderr tails on failure)."""
        return [n.proc for n in self.nodes.values()] + [n.proc for n in self.extras]

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.broker_nodes())

    def running_brokers(self, exclude=()):
        return [n for n in self.broker_nodes()
                if n.running() and not n.stopped and n.node_id not in exclude]

    # ------------------------------------------------------------- lifecycle
    def start(self, wait=True, timeout=READY_TIMEOUT):
        # Start everything before waiting: a quorum needs a majority up to elect a leader,
        # and a node may open its listeners only once it has one.
        for n in self.nodes.values():
            n.start(wait=False)
        for n in self.nodes.values():
            n.proc.wait_ready(timeout=timeout)
        if wait:
            self.wait_ready(timeout=timeout)
        return self

    def wait_ready(self, brokers=None, timeout=READY_TIMEOUT, via=None):
        """Until a running broker's Metadata lists exactly `brokers` (default: every broker
        node's id) and names a controller. Returns that Metadata response."""
        want = sorted(brokers if brokers is not None else
                      [n.node_id for n in self.broker_nodes()])
        deadline = time.monotonic() + timeout
        last = None
        while True:
            for b in ([via] if via else self.running_brokers()):
                try:
                    md = metadata(b.broker_port)
                    last = sorted(int(x.node_id) for x in md.brokers)
                    if last == want and int(md.controller_id) >= 0:
                        return md
                except (OSError, kmatrix.WireError, ClusterError) as e:
                    last = f"{b.name}: {e}"
            if time.monotonic() > deadline:
                tails = "\n".join(f"--- {n.name} (running={n.running()}):\n{n.stderr_tail(25)}"
                                  for n in self.nodes.values())
                raise ClusterError(f"Metadata did not list brokers {want} within {timeout}s "
                                   f"(last: {last})\n{tails}")
            time.sleep(0.2)

    def describe_quorum(self, via=None):
        """DescribeQuorum (API 55 v1) through a running broker: the __cluster_metadata partition."""
        nodes = [via] if via else self.running_brokers()
        err = None
        for b in nodes:
            try:
                return describe_quorum(b.broker_port)
            except (OSError, kmatrix.WireError) as e:
                err = e
        raise ClusterError(f"no broker answered DescribeQuorum: {err}")

    def active_controller(self, timeout=30.0, exclude=(), via=None):
        """The quorum leader's node id (DescribeQuorum; DescribeCluster's controller id from a
        broker that closes the connection on DescribeQuorum), once there is one not in
        `exclude`; None if none within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            for b in ([via] if via else self.running_brokers()):
                leader = -1
                try:
                    q = describe_quorum(b.broker_port)
                    leader = q.leader_id if q.error_code == 0 else -1
                except kmatrix.WireError:
                    try:
                        leader = int(describe_cluster(b.broker_port).controller_id)
                    except (OSError, kmatrix.WireError):
                        pass
                except OSError:
                    pass
                if leader >= 0 and leader not in exclude:
                    return leader
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def cleanup(self):
        """Kills every process this cluster started (stopped ones are continued first)."""
        for n in list(self.nodes.values()) + self.extras:
            n.kill_at_cleanup()


# ---------------------------------------------------------------- raw requests
def metadata(port, topics=None, version=12):
    spec = {"topics": None if topics is None else [{"name": t, "topic_id": None} for t in topics],
            "allow_auto_topic_creation": False, "include_topic_authorized_operations": False}
    with kmatrix.KioConn(port, timeout=10.0) as c:
        return c.call(kmatrix.request(API_METADATA, version, spec))


class QuorumInfo:
    def __init__(self, resp):
        self.error_code = int(resp.error_code)
        part = None
        for t in resp.topics:
            for p in t.partitions:
                part = p
        if part is None:
            self.error_code = self.error_code or -1
            self.leader_id, self.leader_epoch, self.high_watermark = -1, -1, -1
            self.voters, self.observers = [], []
            return
        self.error_code = self.error_code or int(part.error_code)
        self.leader_id = int(part.leader_id)
        self.leader_epoch = int(part.leader_epoch)
        self.high_watermark = int(part.high_watermark)
        self.voters = [(int(v.replica_id), int(v.log_end_offset)) for v in part.current_voters]
        self.observers = [(int(v.replica_id), int(v.log_end_offset)) for v in part.observers]
        # v1: Unix ms of the leader's last message from each voter (-1: none yet).
        self.last_fetch = {int(v.replica_id): int(v.last_fetch_timestamp)
                           for v in part.current_voters}

    def __repr__(self):
        return (f"QuorumInfo(error={self.error_code}, leader={self.leader_id}, "
                f"epoch={self.leader_epoch}, hwm={self.high_watermark}, voters={self.voters})")


def describe_quorum(port):
    spec = {"topics": [{"topic_name": METADATA_TOPIC, "partitions": [{"partition_index": 0}]}]}
    with kmatrix.KioConn(port, timeout=10.0) as c:
        return QuorumInfo(c.call(kmatrix.request(API_DESCRIBE_QUORUM, 1, spec)))


def describe_cluster(port):
    with kmatrix.KioConn(port, timeout=10.0) as c:
        return c.call(kmatrix.request(API_DESCRIBE_CLUSTER, 0,
                                      {"include_cluster_authorized_operations": False}))


def leaders(md, topic):
    """partition -> leader id of `topic` in a Metadata response."""
    for t in md.topics:
        if t.name == topic:
            return {int(p.partition_index): int(p.leader_id) for p in t.partitions}
    return {}

